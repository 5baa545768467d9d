"""Memory (RSS) and CPU time of each process of `make run`, read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.chaos.system import process_tree, role

# The service each role of the process tree belongs to; the Celery processes are the worker's.
SERVICE_OF = {
    "services.jobs": "jobs",
    "services.providers": "providers",
    "services.worker": "worker",
    "celery-main": "worker",
    "celery-child": "worker",
    "services.gateway": "gateway",
    "envoy": "envoy",
}
TICKS = os.sysconf("SC_CLK_TCK")
LARGEST_CHILD = "celery-child (largest PSS)"


def _mib(path: str, field: str) -> float:
    """A "Field:  N kB" line of a /proc file, in MiB (0 when the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int) -> float:
    """The resident set of a process in MiB (0 when it is gone)."""
    return _mib(f"/proc/{pid}/status", "VmRSS:")


def pss_mb(pid: int) -> float:
    """The proportional set size in MiB: pages shared between processes (a forked pool's
    libraries) counted once in all, split among the sharers (0 when it is gone)."""
    return _mib(f"/proc/{pid}/smaps_rollup", "Pss:")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (0 when it is gone)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def roles(root: int) -> dict[int, str]:
    """Every process under root that is part of a service: pid to role."""
    tree = process_tree(root)
    return {info.pid: name for info in tree if (name := role(info, tree)) in SERVICE_OF}


def memory(root: int) -> dict[str, float]:
    """RSS in MiB by role (the Celery children summed) and by service; PSS by service, and the
    largest PSS of one Celery child (issue 19's per-child target)."""
    found: dict[str, float] = {}
    for pid, name in roles(root).items():
        rss, pss = rss_mb(pid), pss_mb(pid)
        found[name] = found.get(name, 0.0) + rss
        service = SERVICE_OF[name]
        found[f"{service} (total)"] = found.get(f"{service} (total)", 0.0) + rss
        found[f"{service} (PSS)"] = found.get(f"{service} (PSS)", 0.0) + pss
        if name == "celery-child":
            found[LARGEST_CHILD] = max(found.get(LARGEST_CHILD, 0.0), pss)
    return found


class CpuWindow:
    """CPU used by each labelled process from now on, by label. The processes are asked again at
    the end, so that one started meanwhile (a new PostgreSQL backend) counts all its CPU, and one
    gone meanwhile counts nothing rather than less than nothing."""

    def __init__(self, processes: Callable[[], dict[int, str]]) -> None:
        self._processes = processes
        self._labels = processes()
        self._before = {pid: cpu_seconds(pid) for pid in self._labels}
        self._began = time.monotonic()

    def seconds(self) -> dict[str, float]:
        """CPU seconds by label since the window opened."""
        labels = self._labels | self._processes()
        used: dict[str, float] = dict.fromkeys(labels.values(), 0.0)
        for pid, label in labels.items():
            used[label] += max(cpu_seconds(pid) - self._before.get(pid, 0.0), 0.0)
        return used

    def percent(self) -> dict[str, float]:
        """% of one core by label since the window opened."""
        elapsed = time.monotonic() - self._began
        return {label: 100 * used / elapsed for label, used in self.seconds().items()}


WORKER_ROLES = ("services.worker", "celery-main", "celery-child")


@contextlib.contextmanager
def paused_worker(root: int) -> Iterator[list[int]]:
    """The worker's processes stopped (SIGSTOP) for a while and continued after, whatever happens:
    what runs meanwhile is measured as if the workers ran on other machines."""
    pids = [pid for pid, name in roles(root).items() if name in WORKER_ROLES]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
