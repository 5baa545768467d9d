"""The `comfyui` kind: a self-hosted ComfyUI server and one workflow file with our placeholders
(workflow.py), the job's options read for it (options.py), followed on the server's WebSocket
(progress.py) and read through its /history and /queue (history.py)."""

from services.core.generators.comfyui.provider import ComfyUI

__all__ = ["ComfyUI"]
