"""The `comfyui` kind: a self-hosted ComfyUI server and one workflow file with our placeholders
(workflow.py), followed on its WebSocket (progress.py) and read through /history (history.py)."""

from services.core.providers.comfyui.provider import ComfyUI

__all__ = ["ComfyUI"]
