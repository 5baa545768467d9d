"""The Celery children's memory: they share the main process's pages, and one whose memory grew
past WORKER_MAX_MEMORY_PER_CHILD_MB is replaced after its task while the worker goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.worker.celery_main import worker_arguments
from services.worker.settings import WorkerSettings
from tests.chaos.system import process_tree, role
from tests.support.factories import create_job
from tests.support.stack import Stack, StackFactory
from videogen.v1 import jobs_pb2

TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}
# Below what any child holds (the renderer's libraries alone are more): every child is over it.
LIMIT_MB = 64
# A child's own pages before its first task: about 10 MiB while the main process's objects are
# frozen before each fork, about 48 MiB for the first child when a collection copies them.
OWN_PAGES_MAX_MB = 25


def celery_children(root: int) -> set[int]:
    """The pids of the Celery pool's children under the worker's supervisor."""
    tree = process_tree(root)
    return {info.pid for info in tree if role(info, tree) == "celery-child"}


async def one_child(root: int, *, other_than: int | None = None, timeout: float = 60) -> int:
    """The pool's single child once it runs (one that is not other_than, when given)."""
    async with asyncio.timeout(timeout):
        while True:
            found = celery_children(root) - {other_than}
            if len(found) == 1:
                return found.pop()
            await asyncio.sleep(0.1)


def own_mb(pid: int) -> float:
    """The pages of a process that no other process shares (smaps_rollup's Private_*), in MiB."""
    lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    return sum(int(line.split()[1]) for line in lines if line.startswith("Private_")) / 1024


async def test_the_children_share_the_main_process_pages_until_they_work(start_stack: StackFactory) -> None:
    stack = await start_stack()
    async with asyncio.timeout(60):
        while not any(str(r.get("event", "")).endswith(" ready.") for r in stack.worker.records()):
            await asyncio.sleep(0.1)
        while len(children := celery_children(stack.worker.process.pid)) < 2:
            await asyncio.sleep(0.1)

    own = {pid: own_mb(pid) for pid in children}

    assert max(own.values()) < OWN_PAGES_MAX_MB, own


async def test_a_child_over_its_memory_limit_is_replaced_after_its_task_and_the_next_job_completes(
    start_stack: StackFactory,
) -> None:
    stack = await start_stack(worker_concurrency=1, worker_max_memory_per_child_mb=LIMIT_MB)
    root = stack.worker.process.pid
    first_child = await one_child(root)

    first = await create_job(stack.jobs, metadata=TINY)
    assert (await stack.wait_for(first.id)).status == jobs_pb2.JOB_STATUS_COMPLETED
    second_child = await one_child(root, other_than=first_child, timeout=30)
    second = await create_job(stack.jobs, metadata=TINY)

    assert (await stack.wait_for(second.id)).status == jobs_pb2.JOB_STATUS_COMPLETED
    assert (ran_in(stack, first.id), ran_in(stack, second.id)) == ({first_child}, {second_child})


def ran_in(stack: Stack, job_id: str) -> set[int]:
    """The pids of the processes whose log records name the job."""
    return {record["pid"] for record in stack.worker.records() if record.get("job_id") == job_id and "pid" in record}


def test_the_limit_reaches_celery_in_kib_and_zero_sets_none() -> None:
    limited = worker_arguments(WorkerSettings(_env_file=None, worker_max_memory_per_child_mb=300))
    unlimited = worker_arguments(WorkerSettings(_env_file=None, worker_max_memory_per_child_mb=0))

    assert "--max-memory-per-child=307200" in limited
    assert not any(argument.startswith("--max-memory-per-child") for argument in unlimited)
