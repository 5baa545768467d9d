"""Concurrent plain creates share INSERT statements; each caller still gets its own job."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from services.core import db
from services.core.job.options import JobOptions
from services.core.models import Job
from services.core.settings import CoreSettings
from services.jobs.batching import CreateBatcher
from services.jobs.domain import NewJob
from services.jobs.hot import HotTransitions
from services.jobs.service import JobsService


def plain(n: int) -> NewJob:
    return NewJob(
        user_id=f"batch-user-{n % 7}", prompt=f"batched {n}", metadata={"n": n}, options=JobOptions(), max_retries=2
    )


@pytest.mark.parametrize("hot", [True, False], ids=["hand-written", "orm"])
async def test_concurrent_creates_share_statements_and_each_gets_its_own_job(own_database_url: str, hot: bool) -> None:
    engine = db.create_engine(CoreSettings(), own_database_url)
    sessions = db.create_sessions(engine)
    batcher = CreateBatcher(sessions, claimed=False, max_batch=16, hot=HotTransitions(engine) if hot else None)
    service = JobsService(sessions, batcher=batcher)
    try:
        created = await asyncio.gather(*(service.create_job(plain(n)) for n in range(64)))
        async with sessions() as session:
            stored = await session.scalar(select(func.count()).select_from(Job))
    finally:
        await engine.dispose()

    assert [c.job.prompt for c in created] == [f"batched {n}" for n in range(64)]
    assert [c.job.metadata_ for c in created] == [{"n": n} for n in range(64)]
    assert len({c.job.id for c in created}) == 64 and stored == 64
    assert all(c.job.status == "queued" and c.job.max_retries == 2 and not c.replayed for c in created)
    # 64 at once, 16 at most a statement: 4 statements at best, never one per job.
    assert batcher.inserted == 64
    assert 4 <= batcher.statements < 64


@pytest.mark.parametrize("hot", [True, False], ids=["hand-written", "orm"])
async def test_a_lone_create_is_sent_at_once_alone(own_database_url: str, hot: bool) -> None:
    engine = db.create_engine(CoreSettings(), own_database_url)
    sessions = db.create_sessions(engine)
    batcher = CreateBatcher(sessions, claimed=False, hot=HotTransitions(engine) if hot else None)
    try:
        created = await JobsService(sessions, batcher=batcher).create_job(plain(1))
    finally:
        await engine.dispose()
    assert created.job.prompt == "batched 1"
    assert (batcher.statements, batcher.inserted) == (1, 1)


async def test_every_caller_of_a_failed_batch_gets_the_failure() -> None:
    settings = CoreSettings(db_connect_timeout=1)
    engine = db.create_engine(settings, "postgresql://postgres@127.0.0.1:1/nowhere")
    batcher = CreateBatcher(db.create_sessions(engine), claimed=False)
    try:
        outcomes = await asyncio.gather(*(batcher.insert(plain(n)) for n in range(5)), return_exceptions=True)
    finally:
        await engine.dispose()
    assert all(isinstance(outcome, Exception) and db.is_unavailable(outcome) for outcome in outcomes)
    assert batcher.statements == 0


@pytest.mark.parametrize("field", ["idempotency_key", "webhook_url"])
async def test_a_create_with_its_own_transaction_is_not_batched(own_database_url: str, field: str) -> None:
    engine = db.create_engine(CoreSettings(), own_database_url)
    sessions = db.create_sessions(engine)
    batcher = CreateBatcher(sessions, claimed=False)
    value = "key-1" if field == "idempotency_key" else "https://example.com/hook"
    own: dict[str, Any] = {field: value}
    try:
        created = await JobsService(sessions, batcher=batcher).create_job(
            NewJob(user_id="u-1", prompt="own", metadata={}, options=JobOptions(), max_retries=0, **own)
        )
    finally:
        await engine.dispose()
    assert created.job.prompt == "own"
    assert batcher.statements == 0
