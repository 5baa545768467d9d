"""`python -m services.worker`: the worker service, its supervisor (services/worker/supervisor.py)."""

from __future__ import annotations

import uvloop

from services.core.logging import configure_logging
from services.core.settings import load_settings
from services.worker.settings import WorkerSettings
from services.worker.supervisor import serve


def main() -> None:
    """Reads settings and runs the supervisor until a signal or the Celery child's exit."""
    settings = load_settings(WorkerSettings)
    configure_logging(service="worker", level=settings.log_level)
    raise SystemExit(uvloop.run(serve(settings)))


if __name__ == "__main__":
    main()
