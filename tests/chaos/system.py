"""The system under test: `python -m services.run` and the process tree under it, read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import ROOT, ServiceProcess, clean_env, free_ports_env

# Settings that make a job cheap and recovery quick. The reliability ones (lease, heartbeat,
# orphan sweep) are ignored by a service that does not know them yet.
FAST_SETTINGS = {
    "WORKER_CONCURRENCY": "4",
    "JOB_RETRY_BACKOFF_BASE": "0.2",
    "JOB_RETRY_BACKOFF_MAX": "1",
    "DISPATCH_INTERVAL": "0.2",
    "JOBS_RATE_LIMIT_PER_MINUTE": "0",
    "JOB_LEASE_SECONDS": "10",
    "WORKER_HEARTBEAT_INTERVAL": "1",
    "ORPHAN_SWEEP_AFTER_SECONDS": "5",
    "WORKER_PROGRESS_INTERVAL": "0.5",
    "HEALTH_CHECK_INTERVAL": "0.5",
    "SHUTDOWN_GRACE": "5",
    "SHUTDOWN_DRAIN_DELAY": "0",
    "DB_CONNECT_TIMEOUT": "2",
    "GRPC_BIND_HOST": "127.0.0.1",
    "METRICS_BIND_HOST": "127.0.0.1",
    "API_HOST": "127.0.0.1",
}
SAMPLE_INTERVAL = 0.1


@dataclass(frozen=True)
class ProcessInfo:
    """One process as /proc shows it; (pid, started) names it even if the pid is reused."""

    pid: int
    ppid: int
    started: int
    cmdline: tuple[str, ...]

    def runs(self, module: str) -> bool:
        """Whether it is `python -m module`."""
        return "-m" in self.cmdline and module in self.cmdline


def read_process(pid: int) -> ProcessInfo | None:
    """The process with this pid, or None when it is gone."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    cmdline = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return ProcessInfo(pid=pid, ppid=int(fields[1]), started=int(fields[19]), cmdline=cmdline)


def process_tree(root: int) -> list[ProcessInfo]:
    """Every live descendant of root (root excluded)."""
    by_parent: dict[int, list[ProcessInfo]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := read_process(int(entry))) is not None:
            by_parent.setdefault(info.ppid, []).append(info)
    found: list[ProcessInfo] = []
    pending = [root]
    while pending:
        for child in by_parent.get(pending.pop(), []):
            found.append(child)
            pending.append(child.pid)
    return found


def role(info: ProcessInfo, tree: list[ProcessInfo]) -> str:
    """What the process is: celery-main, celery-child, or the module (or binary) it runs."""
    if info.runs("services.worker.celery_main"):
        parent = next((p for p in tree if p.pid == info.ppid), None)
        return "celery-child" if parent is not None and parent.runs("services.worker.celery_main") else "celery-main"
    if "-m" in info.cmdline:
        return info.cmdline[info.cmdline.index("-m") + 1]
    return Path(info.cmdline[0]).name if info.cmdline else "?"


@dataclass
class Sighting:
    """When a process was first and last seen alive (epoch seconds)."""

    info: ProcessInfo
    role: str
    first: float
    last: float


@dataclass
class ProcessWatch:
    """Samples the process tree under a root pid every SAMPLE_INTERVAL, in a thread."""

    root: int
    seen: dict[tuple[int, int], Sighting] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Starts sampling."""
        threading.Thread(target=self._loop, name="process-watch", daemon=True).start()

    def stop(self) -> None:
        """Stops sampling after the current sample."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_INTERVAL)

    def sample(self) -> list[tuple[ProcessInfo, str]]:
        """The live tree now, with roles; remembered in seen."""
        tree = process_tree(self.root)
        now = time.time()
        with self._lock:
            for info in tree:
                key = (info.pid, info.started)
                if key in self.seen:
                    self.seen[key].last = now
                else:
                    self.seen[key] = Sighting(info, role(info, tree), now, now)
            # A process whose parent died leaves the tree but may live on (an orphaned Celery child).
            in_tree = {(info.pid, info.started) for info in tree}
            for key, sighting in self.seen.items():
                if key not in in_tree and _same_alive(sighting.info):
                    sighting.last = now
        return [(info, role(info, tree)) for info in tree]

    def last_seen(self, pid: int, after: float) -> float | None:
        """When the process with this pid, alive at `after`, was last seen alive."""
        with self._lock:
            times = [s.last for (p, _), s in self.seen.items() if p == pid and s.last >= after]
        return min(times) if times else None

    def sightings(self) -> list[Sighting]:
        """Every process seen so far."""
        with self._lock:
            return list(self.seen.values())


def system_env(*, database_url: str, redis_url: str, workdir: Path, replicas: str = "") -> dict[str, str]:
    """The environment of `make run` for a scenario: its servers, free ports, its own directories,
    and RUN_REPLICAS when given."""
    return clean_env(
        **free_ports_env(),
        **({"RUN_REPLICAS": replicas} if replicas else {}),
        **FAST_SETTINGS,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        DATA_DIR=str(workdir / "data"),
        MEDIA_DIR=str(workdir / "media"),
        PYTHONPATH=str(ROOT),
    )


class System:
    """`make run` with its log lines collected and its process tree watched."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.edge_url = f"http://127.0.0.1:{env['EDGE_PORT']}"
        self.run = ServiceProcess("services.run", env, cwd=workdir)
        self.watch = ProcessWatch(self.run.process.pid)
        self.watch.start()
        # Processes of the tree still alive after `make run` ended, killed by stop().
        self.outlived: list[int] = []

    def wait_ready(self, timeout: float = 180) -> None:
        """Until `make run` says every process is serving."""
        self.run.wait_event("run.ready", timeout=timeout)

    def alive(self) -> bool:
        """Whether `make run` still runs."""
        return self.run.process.poll() is None

    def processes(self, wanted: str) -> list[ProcessInfo]:
        """The live processes of this role (see role())."""
        return [info for info, name in self.watch.sample() if name == wanted]

    def stop(self, timeout: float = 60) -> int | None:
        """Ctrl-C to `make run` and its exit code; whatever of its tree outlives it is killed."""
        self.watch.sample()
        if self.alive():
            self.run.process.send_signal(signal.SIGINT)
        code: int | None
        try:
            code = self.run.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.run.process.kill()
            code = None
        self.watch.stop()
        for sighting in self.watch.sightings():
            if _same_alive(sighting.info):
                self.outlived.append(sighting.info.pid)
                _kill(sighting.info)
        return code


def _same_alive(info: ProcessInfo) -> bool:
    """Whether this very process (not another one with its pid) is alive."""
    now = read_process(info.pid)
    return now is not None and now.started == info.started


def _kill(info: ProcessInfo) -> None:
    """SIGKILL the process."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGKILL)
