"""The worker: Celery tasks and WorkerService (issue 4)."""
