"""The processes of `make run` (python -m services.run) for a test: free ports, its own key prefix."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.brokers import drop_keys
from tests.support.processes import ServiceProcess, clean_env, free_ports_env


@dataclass(frozen=True)
class LocalRun:
    """A started `make run`, the port variables it was given, and its working directory."""

    process: ServiceProcess
    ports: dict[str, str]
    workdir: Path

    def port(self, variable: str) -> int:
        """The port of a variable such as EDGE_PORT."""
        return int(self.ports[variable])


@contextmanager
def local_run(database_url: str, redis_url: str, *, name: str, **env: str) -> Iterator[LocalRun]:
    """Starts `make run` on free loopback ports (not waiting for it), and stops it and removes its
    working directory and Redis keys at the end."""
    workdir = Path(tempfile.mkdtemp(prefix=f"vg-{name}-"))
    ports = free_ports_env()
    # A port variable among env (a test's choice) replaces the free one.
    ports.update({variable: env.pop(variable) for variable in list(env) if variable in ports})
    prefix = f"{name}{uuid.uuid4().hex[:8]}-"
    variables = clean_env(
        **ports,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CELERY_KEY_PREFIX=prefix,
        SHUTDOWN_DRAIN_DELAY="0",
        **env,
    )
    run = ServiceProcess("services.run", variables, cwd=workdir)
    try:
        yield LocalRun(run, ports, workdir)
    finally:
        run.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        drop_keys(redis_url, prefix)
