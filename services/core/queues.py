"""The Celery queues and how a job's metadata picks one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HIGH_PRIORITY = "high_priority"
DEFAULT = "default"
LOW_PRIORITY = "low_priority"
QUEUES = (HIGH_PRIORITY, DEFAULT, LOW_PRIORITY)
_BY_PRIORITY = {"high": HIGH_PRIORITY, "low": LOW_PRIORITY}


def queue_for(metadata: Mapping[str, Any]) -> str:
    """metadata.priority "high" or "low" names its queue; anything else goes to default."""
    priority = metadata.get("priority")
    return _BY_PRIORITY.get(priority, DEFAULT) if isinstance(priority, str) else DEFAULT
