"""A stand-in for a remote video provider, scripted by the job's metadata (tests only).

metadata.modelInput.script (its own input, as a hosted model's): {"fail": "message"} fails every
attempt ({"final": true} too: a refusal no retry helps); {"gate": "/path"} holds the job,
reporting progress, until that file exists (with {"echo": "/path"} too, it reports only when that
file's text changes, as its stage, like a quiet remote render, and once the report returned
writes the text to /path.heard); {"task": "/path"} reports a remote task whose id is that path,
and cancel() of it writes "cancelled" there. The video itself is rendered by the real `local`
provider.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from services.core.generators.base import (
    ProgressCallback,
    ProviderError,
    RenderedVideo,
    TaskCallback,
    VideoSpec,
)
from services.core.generators.local import LocalRenderer
from services.core.generators.registry import ProviderConfig
from services.core.job.options import JobOptions

TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}


class ScriptedProvider:
    """Does what metadata.modelInput.script says, then renders a tiny real video."""

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self._renderer = LocalRenderer(config)
        self._scripts: dict[str, dict[str, Any]] = {}

    def probe(self, timeout: float) -> None:
        """Always up: this double stands for a healthy remote provider."""

    def spec(self, prompt: str, options: JobOptions, *, model: str = "") -> VideoSpec:
        spec = self._renderer.spec(prompt, JobOptions.parse(TINY))
        self._scripts[prompt] = dict(options.model_input.get("script", {}))
        return spec

    def cancel(self, task_id: str, *, timeout: float) -> None:
        """Marks the scripted task (a file) cancelled."""
        Path(task_id).write_text("cancelled")

    def generate(
        self, spec: VideoSpec, *, output: Path, progress: ProgressCallback, on_task: TaskCallback
    ) -> RenderedVideo:
        script = self._scripts.pop(spec.prompt, {})
        if "task" in script:
            on_task(str(script["task"]))
        if "fail" in script:
            raise ProviderError(str(script["fail"]), final=bool(script.get("final")))
        if "gate" in script:
            self._hold(Path(script["gate"]), progress, echo=script.get("echo"))
        return self._renderer.generate(spec, output=output, progress=progress, on_task=on_task)

    def _hold(self, gate: Path, progress: ProgressCallback, *, echo: str | None) -> None:
        """Reports progress until the gate file exists: with echo, the file's text on each change."""
        reported = None
        while not gate.exists():
            source = Path(echo) if echo else None
            stage = source.read_text() if source is not None and source.exists() else "waiting"
            if stage != reported or source is None:
                progress(0.1, stage)
                reported = stage
                if echo:
                    Path(f"{echo}.heard").write_text(stage)
            time.sleep(0.05)
