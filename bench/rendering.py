"""The CPU of the rendering alone, to take out of a job's whole-life CPU: the built-in `local`
provider renders the bench's tiny video in the bench's own process, and the process's CPU time
per render is read around it (the worker renders the same spec with the same code)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.load import TINY
from services.core.generators.local import LocalRenderer
from services.core.job.options import JobOptions

RENDERS = 20


def _ignore(*_: object) -> None:
    """Progress and task callbacks: nothing to report."""


def render_cpu_ms(renders: int = RENDERS) -> float:
    """ms of CPU to render one tiny video, the mean of renders after one warm-up render."""
    renderer = LocalRenderer()
    spec = renderer.spec("bench rendering 1", JobOptions.parse(TINY))
    with tempfile.TemporaryDirectory(prefix="vg-bench-render-") as directory:
        output = Path(directory) / "video.mp4"
        renderer.generate(spec, output=output, progress=_ignore, on_task=_ignore)
        began = time.thread_time()
        for n in range(renders):
            spec = renderer.spec(f"bench rendering {n}", JobOptions.parse(TINY))
            renderer.generate(spec, output=output, progress=_ignore, on_task=_ignore)
        return 1000 * (time.thread_time() - began) / renders
