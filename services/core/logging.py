"""Structured JSON logs on stdout, with the request id bound from context."""

from __future__ import annotations

import logging
import sys
import uuid

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

from services.core.redact import redact

REQUEST_ID_HEADER = "x-request-id"


def redact_values(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """Masks the password of any URL in a log line's text (exceptions included): a DSN or a
    webhook URL with a token must never reach the logs, whoever logs it."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


def configure_logging(*, service: str, level: str) -> None:
    """Sends structlog and standard-library records as one JSON object per line."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.EventRenamer("event"),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact_values,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_values,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that narrate every step at INFO: keep their warnings only.
    for noisy in ("pgserver", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "DEBUG" else logging.DEBUG)
    # httpx logs every request's full URL at INFO, and a URL may carry a token (a webhook
    # receiver's, a provider's): never, whatever the level.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger for one module."""
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


def current_request_id() -> str | None:
    """The request id bound to the current call, if any."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def new_request_id() -> str:
    """A fresh request id for work that no caller named."""
    return uuid.uuid4().hex
