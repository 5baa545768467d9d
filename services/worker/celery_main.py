"""`python -m services.worker.celery_main`: the Celery worker process (prefork pool) itself.

The supervisor (`python -m services.worker`) starts it; it consumes the three queues in
priority order with one message per slot.
"""

from __future__ import annotations

import gc

from celery.signals import setup_logging, worker_before_create_process

from services.core.embedded import resolve_redis_url
from services.core.logging import configure_logging
from services.core.queues import QUEUES
from services.core.settings import load_settings
from services.core.tasks import broker_url, create_celery
from services.worker.kombu_patch import patch_kombu_redis
from services.worker.settings import WorkerSettings
from services.worker.tasks import register_tasks


def main() -> None:
    """Builds the app from settings and runs the worker until a signal stops it."""
    settings = load_settings(WorkerSettings)

    @setup_logging.connect  # type: ignore[untyped-decorator]
    def use_json_logs(**_: object) -> None:
        configure_logging(service="worker", level=settings.log_level)

    configure_logging(service="worker", level=settings.log_level)
    worker_before_create_process.connect(share_with_children)
    # Before the consumer connects: a lost Redis must not end the worker (kombu bug, see module).
    patch_kombu_redis()
    app = create_celery(settings, broker=broker_url(settings, resolve_redis_url(settings)))
    register_tasks(app, settings)
    app.worker_main(worker_arguments(settings))


def share_with_children(**_: object) -> None:
    """Before each fork of a pool child: every object alive moves out of the collector's reach.

    A collection walks every tracked object and writes its header, so each page of the main
    process that a child (or the main process) collects is copied into it: measured, the first
    child held 48 MiB of its own before its first task, against 10 with the objects frozen. What
    is frozen is never collected in the main process; it forks only at start and to replace a
    child, so little garbage is kept.
    """
    gc.freeze()


def worker_arguments(settings: WorkerSettings) -> list[str]:
    """The `celery worker` command line of these settings."""
    arguments = [
        "worker",
        f"--queues={','.join(QUEUES)}",
        f"--concurrency={settings.worker_concurrency}",
        "--pool=prefork",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--hostname={settings.worker_name}@%h",
        f"--loglevel={settings.log_level}",
    ]
    if settings.worker_max_memory_per_child_mb:
        # Celery counts KiB of the child's peak resident set, checked after each task.
        arguments.append(f"--max-memory-per-child={settings.worker_max_memory_per_child_mb * 1024}")
    return arguments


if __name__ == "__main__":
    main()
