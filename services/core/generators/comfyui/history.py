"""Reading a ComfyUI server's answers: /history entries (the end of a run, its video or its
failure), /queue (where a prompt stands) and the errors of a refused prompt."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import httpx

from services.core.generators.http import error_message

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".m4v")
# Where output nodes list their files: core SaveVideo under "images" (with "animated"),
# VideoHelperSuite's VHS_VideoCombine under "gifs", some others under "videos".
OUTPUT_KEYS = ("images", "gifs", "videos", "video")


def failure_of(entry: Mapping[str, Any]) -> str | None:
    """Why the run failed, from its history entry; None when it succeeded."""
    status = entry.get("status")
    if not isinstance(status, dict) or status.get("status_str") != "error":
        return None
    for message in status.get("messages") or []:
        if not (isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict)):
            continue
        event, data = message
        where = f"node {data.get('node_id')} ({data.get('node_type')})"
        if event == "execution_error":
            detail = f"{data.get('exception_type') or 'error'}: {data.get('exception_message') or ''}".strip()
            return f"{where} failed: {detail}"[:500]
        if event == "execution_interrupted":
            return f"interrupted on the server at {where}"
    return "the run failed (the server gave no reason)"


def saved_video(entry: Mapping[str, Any]) -> dict[str, str] | None:
    """The first video file the run saved (filename, subfolder, type), output files first."""
    found: list[dict[str, str]] = []
    outputs = entry.get("outputs")
    for output in (outputs or {}).values() if isinstance(outputs, dict) else ():
        for key in OUTPUT_KEYS:
            items = output.get(key) if isinstance(output, dict) else None
            for item in items if isinstance(items, list) else ():
                name = item.get("filename") if isinstance(item, dict) else None
                if isinstance(name, str) and name.lower().endswith(VIDEO_EXTENSIONS):
                    found.append(
                        {
                            "filename": name,
                            "subfolder": str(item.get("subfolder") or ""),
                            "type": str(item.get("type") or "output"),
                        }
                    )
    found.sort(key=lambda item: item["type"] != "output")
    return found[0] if found else None


def queue_place(queue: Any, prompt_id: str) -> int | None:
    """0 while the prompt runs, its position (1 = next) while it waits, None when it is in neither."""
    if not isinstance(queue, dict):
        return None
    running = queue.get("queue_running") or []
    if any(_item_id(item) == prompt_id for item in running):
        return 0
    pending = [item for item in queue.get("queue_pending") or [] if _item_id(item) is not None]
    ours = next((item for item in pending if _item_id(item) == prompt_id), None)
    if ours is None:
        return None
    # The pending list is the server's heap, not sorted: the place is how many numbers come first.
    return 1 + sum(1 for item in pending if _number(item) < _number(ours))


def refusal(response: httpx.Response) -> str:
    """The reasons of a 400 to POST /prompt: the error and each node's errors."""
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            parts = [str(body["error"].get("message") or body["error"].get("type") or "refused")]
            nodes = body.get("node_errors")
            for node_id, info in (nodes or {}).items() if isinstance(nodes, dict) else ():
                for error in info.get("errors") or [] if isinstance(info, dict) else []:
                    if isinstance(error, dict):
                        details = f": {error['details']}" if error.get("details") else ""
                        parts.append(f"node {node_id} ({info.get('class_type')}): {error.get('message')}{details}")
            return "; ".join(parts)[:300]
    return error_message(response)


def _item_id(item: Any) -> str | None:
    return str(item[1]) if isinstance(item, list) and len(item) > 1 else None


def _number(item: Any) -> float:
    value = item[0] if isinstance(item, list) and item else 0
    return float(value) if isinstance(value, int | float) else 0.0
