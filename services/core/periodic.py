"""The loop of a service's periodic work (the dispatcher's rounds, the retention sweep)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from structlog.typing import FilteringBoundLogger

from services.core import db


async def every(
    interval: float,
    stopping: asyncio.Event,
    one_round: Callable[[], Awaitable[object]],
    *,
    log: FilteringBoundLogger,
    failed: str,
) -> None:
    """Runs one_round every interval until stopping is set. A database outage only delays the
    next round; any other failure is logged as failed, and the rounds go on."""
    while not stopping.is_set():
        try:
            await one_round()
        except Exception as exc:
            if not db.is_unavailable(exc):
                log.exception(failed)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stopping.wait()
