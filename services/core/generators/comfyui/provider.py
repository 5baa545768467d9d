"""The `comfyui` kind: a self-hosted ComfyUI server running the entry's workflow file.

A run: upload the input image (POST /upload/image) when the workflow takes one, submit the
filled graph (POST /prompt, with a prompt_id of ours, reported at once), follow it on the
server's WebSocket (/ws) while its /history decides the end (polled alone when the socket
drops), then download the video (GET /view). Cancel deletes a waiting prompt (POST /queue) and
interrupts a running one (POST /interrupt). ComfyUI has no auth: a key, when the entry names
one, goes as a Bearer header to the auth proxy in front of it.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from services.core.generators.base import (
    InvalidOptions,
    JobCancelled,
    ProgressCallback,
    ProviderError,
    RenderedVideo,
    TaskCallback,
    VideoSpec,
)
from services.core.generators.capabilities import ModelCapabilities
from services.core.generators.comfyui.history import failure_of, queue_place, refusal, saved_video
from services.core.generators.comfyui.options import job_spec
from services.core.generators.comfyui.progress import SAMPLED, EventStream, RunState
from services.core.generators.comfyui.workflow import Value, WorkflowError, load_workflow
from services.core.generators.http import ProviderHttp, fetch_video
from services.core.generators.input_images import ImageFetcher
from services.core.generators.registry import ProviderConfig
from services.core.job.options import JobOptions
from services.core.logging import get_logger

log = get_logger(__name__)
CANCEL_SECONDS = 5.0
# After the socket announced the end, /history is asked again this soon (it is written just after).
ENDING_RECHECK = 0.2


class ComfyUI:
    """A client of one ComfyUI server and one workflow (one model)."""

    def __init__(self, config: ProviderConfig, *, images: ImageFetcher | None = None) -> None:
        """Reads and checks the workflow file (WorkflowError naming it and what is wrong).
        images fetches input images (public https hosts only, unless a test's fetcher says)."""
        self.name = config.name
        self._config = config
        self._model, self._capabilities = _model_of(config)
        if not config.workflow:
            raise WorkflowError(f"provider {self.name}: workflow (a ComfyUI workflow file in API format) is required")
        try:
            self._workflow = load_workflow(Path(config.workflow))
        except WorkflowError as exc:
            raise WorkflowError(f"provider {self.name}: {exc}") from None
        _check_image_input(self.name, self._workflow.path, "image" in self._workflow.placeholders, self._capabilities)
        key = config.api_key()
        self._headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}
        self._http = ProviderHttp(config, headers=self._headers, describe_error=refusal)
        self._images = images or ImageFetcher()

    def spec(self, prompt: str, options: JobOptions, *, model: str = "") -> VideoSpec:
        """The job at the workflow's nearest legal values (options.py), or InvalidOptions."""
        if model and model != self._model:
            raise InvalidOptions(f"metadata.model: {self.name} runs {self._model} only")
        capabilities, workflow = self._capabilities, self._workflow
        return job_spec(
            prompt, options, provider=self.name, model=self._model, capabilities=capabilities, workflow=workflow
        )

    def generate(
        self, spec: VideoSpec, *, output: Path, progress: ProgressCallback, on_task: TaskCallback
    ) -> RenderedVideo:
        """Submits the filled workflow, follows it to its end, and downloads its video."""
        deadline = time.monotonic() + self._config.timeout_seconds
        prompt_id, client_id = str(uuid.uuid4()), uuid.uuid4().hex
        graph = self._workflow.fill(self._values(spec, prompt_id, deadline))
        entry = self._run(graph, ids=(prompt_id, client_id), deadline=deadline, progress=progress, on_task=on_task)
        saved = self._saved_video(entry)
        progress(SAMPLED, "downloading")
        url = f"/view?{urlencode(saved)}"
        return fetch_video(
            self._http, output, deadline, url=lambda: url, max_bytes=self._config.max_video_bytes, model=spec.model,
            auth=True,
        )  # fmt: skip

    def cancel(self, task_id: str, *, timeout: float) -> None:
        """Deletes the prompt from the queue, and interrupts it if it runs (a finished or unknown
        prompt is neither: nothing happens)."""
        self._stop(task_id, time.monotonic() + timeout)

    def probe(self, timeout: float) -> None:
        """GET /system_stats: the server (and the auth proxy in front of it) answers."""
        self._http.json("GET", "/system_stats", time.monotonic() + timeout)

    def _values(self, spec: VideoSpec, prompt_id: str, deadline: float) -> dict[str, Value]:
        values: dict[str, Value] = {
            "prompt": spec.prompt,
            # A job that names no seed gets a fresh one, as ComfyUI's "randomize" would.
            "seed": spec.seed if spec.seed is not None else random.SystemRandom().randrange(2**48),
            "width": spec.width,
            "height": spec.height,
            "fps": spec.fps,
            # The first frame, then one per 1/fps second (Wan's 81 frames at 16 fps are 5 s).
            "frames": round(spec.duration_seconds * spec.fps) + 1,
        }
        if "image" in self._workflow.placeholders:
            if not spec.image_url:
                raise InvalidOptions(f"metadata.imageUrl: {self.name} ({self._model}) needs an input image")
            values["image"] = self._upload_image(spec.image_url, prompt_id, deadline)
        return values

    def _upload_image(self, url: str, prompt_id: str, deadline: float) -> str:
        """Fetches the job's image (we must: ComfyUI reads only its own input folder) and uploads
        it under a name of this run; the name a LoadImage node takes."""
        image = self._images.fetch(url, deadline=deadline)
        extension = image.filename.rpartition(".")[2]
        upload = {"image": (f"videogen-{prompt_id}.{extension}", image.data, image.content_type)}
        answer = self._http.json(
            "POST", "/upload/image", deadline, files=upload, data={"type": "input", "overwrite": "true"}
        )
        name = answer.get("name") if isinstance(answer, dict) else None
        if not isinstance(name, str) or not name:
            raise ProviderError(f"{self.name}: POST /upload/image: the answer names no file")
        subfolder = answer.get("subfolder") or ""
        return f"{subfolder}/{name}" if subfolder else name

    def _run(
        self,
        graph: dict[str, Any],
        *,
        ids: tuple[str, str],
        deadline: float,
        progress: ProgressCallback,
        on_task: TaskCallback,
    ) -> dict[str, Any]:
        """Submits the graph with our (prompt_id, client_id) and follows it to its history entry;
        stops it on the server when the job is cancelled."""
        prompt_id, client_id = ids
        # Opened before submitting, so that no event of the run is missed.
        socket_url, left = self._socket_url(client_id), deadline - time.monotonic()
        events = EventStream.open(socket_url, headers=self._headers, timeout=min(10.0, left), provider=self.name)
        # Our own id, recorded before the server has it: a worker dying now leaves nothing unknown.
        on_task(prompt_id)
        try:
            prompt_id = self._submit(graph, ids=ids, deadline=deadline, on_task=on_task)
            return self._wait(RunState(self._workflow, prompt_id), events, deadline, progress)
        except JobCancelled:
            self._stop_quietly(prompt_id)
            raise
        finally:
            events.close()

    def _saved_video(self, entry: dict[str, Any]) -> dict[str, str]:
        """The video a finished run saved; ProviderError when it failed or saved none."""
        reason = failure_of(entry)
        if reason is not None:
            raise ProviderError(f"{self.name}: {reason}")
        saved = saved_video(entry)
        if saved is None:
            raise ProviderError(
                f"{self.name}: the workflow saved no video (it needs a SaveVideo node, or another node "
                "writing an MP4 or WebM to ComfyUI's output)"
            )
        return saved

    def _submit(self, graph: dict[str, Any], *, ids: tuple[str, str], deadline: float, on_task: TaskCallback) -> str:
        """POST /prompt with our (prompt_id, client_id); the prompt's id (ours, unless an old
        server chose its own)."""
        prompt_id, client_id = ids
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        try:
            answer = self._http.json("POST", "/prompt", deadline, json=body)
        except InvalidOptions as exc:
            # The server's validation of the graph: a model file or a node it lacks, not the job's fault.
            raise ProviderError(f"{exc} (workflow {self._workflow.path.name})") from None
        given = answer.get("prompt_id") if isinstance(answer, dict) else None
        if isinstance(given, str) and given and given != prompt_id:
            on_task(given)
            return given
        return prompt_id

    def _wait(self, run: RunState, events: EventStream, deadline: float, progress: ProgressCallback) -> dict[str, Any]:
        """Follows the run until /history holds it; the socket's events move progress between
        checks, and one announcing the end brings the next check forward."""
        check_at, absent = time.monotonic(), 0
        while True:
            if time.monotonic() >= deadline:
                self._stop_quietly(run.prompt_id)
                raise ProviderError(f"{self.name}: no video within {self._config.timeout_seconds:g} s")
            if time.monotonic() >= check_at:
                entry = self._history(run.prompt_id, deadline)
                if entry is not None:
                    return entry
                if not run.followed(events.alive):
                    absent = self._place(run, deadline, absent)
                check_at = time.monotonic() + (ENDING_RECHECK if run.ending else self._config.poll_interval_seconds)
            progress(run.fraction, run.stage)
            event = events.next(min(check_at, deadline) - time.monotonic())
            if event is not None and run.apply(event):
                check_at = time.monotonic()

    def _history(self, prompt_id: str, deadline: float) -> dict[str, Any] | None:
        history = self._http.json("GET", f"/history/{prompt_id}", deadline)
        entry = history.get(prompt_id) if isinstance(history, dict) else None
        return entry if isinstance(entry, dict) else None

    def _place(self, run: RunState, deadline: float, absent: int) -> int:
        """Reads the queue into the run; how many checks in a row found the prompt nowhere."""
        place = queue_place(self._http.json("GET", "/queue", deadline), run.prompt_id)
        if place == 0:
            run.running()
        elif place is not None:
            run.queued(place)
        else:
            # Twice, since a run that ends between the history and the queue reads is in neither.
            if absent + 1 >= 2:
                raise ProviderError(f"{self.name}: the prompt left the server's queue without a result "
                                    "(deleted there, or the server restarted)")  # fmt: skip
            return absent + 1
        return 0

    def _stop(self, prompt_id: str, deadline: float) -> None:
        # Deleting first means it cannot start after we looked; a targeted interrupt only if it
        # runs, since servers before September 2025 ignore the prompt_id and interrupt whatever runs.
        self._http.request("POST", "/queue", deadline, json={"delete": [prompt_id]})
        if queue_place(self._http.json("GET", "/queue", deadline), prompt_id) == 0:
            self._http.request("POST", "/interrupt", deadline, json={"prompt_id": prompt_id})
            log.info("comfyui.interrupted", provider=self.name, prompt_id=prompt_id)

    def _stop_quietly(self, prompt_id: str) -> None:
        try:
            self._stop(prompt_id, time.monotonic() + CANCEL_SECONDS)
        except (ProviderError, InvalidOptions) as exc:
            log.warning("comfyui.not_stopped", provider=self.name, prompt_id=prompt_id, error=str(exc))

    def _socket_url(self, client_id: str) -> str:
        host = self._config.host
        scheme, _, rest = host.partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?{urlencode({'clientId': client_id})}"


def _model_of(config: ProviderConfig) -> tuple[str, ModelCapabilities]:
    """The entry's one model and what it makes: only the workflow's author knows."""
    models = config.available_models()
    if len(models) != 1 or models[0] not in config.capabilities:
        raise WorkflowError(
            f"provider {config.name}: name the workflow's model (models: [one-name]) and what it makes "
            "(capabilities: {one-name: {...}}); one workflow makes one model's videos"
        )
    return models[0], config.capabilities[models[0]]


def _check_image_input(name: str, path: Path, takes_image: bool, capabilities: ModelCapabilities) -> None:
    if takes_image and (capabilities.text_to_video or not capabilities.image_to_video):
        raise WorkflowError(f"provider {name}: workflow {path} takes {{{{image}}}}, so its capabilities must say "
                            "image_to_video: true and text_to_video: false")  # fmt: skip
    if not takes_image and capabilities.image_to_video:
        raise WorkflowError(f"provider {name}: its capabilities say image_to_video, but workflow {path} has "
                            "no {{image}} input")  # fmt: skip
