"""How often a supervisor may start a crashed process again before it gives up."""

from __future__ import annotations

import time


class RestartBudget:
    """At most per_minute restarts in any 60 s; past that the supervisor should give up."""

    def __init__(self, per_minute: int = 5) -> None:
        self._per_minute = per_minute
        self._times: list[float] = []

    def allow(self) -> bool:
        """Whether a restart may happen now (and counts it when so)."""
        now = time.monotonic()
        self._times = [t for t in self._times if now - t < 60]
        if len(self._times) >= self._per_minute:
            return False
        self._times.append(now)
        return True

    @property
    def recent(self) -> int:
        """Restarts within the last minute, this one included."""
        return len(self._times)
