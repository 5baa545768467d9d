"""What every job goes through, in hand-written SQL on the pool's asyncpg connection: the batched
insert of plain creates, and the two worker transitions, StartJob and CompleteJob, as the same
conditional UPDATE as Transitions.move at about a tenth of the ORM's CPU (measured: 0.3 against
2.2-2.5 ms a transition).

Each is one statement sent alone (autocommit: one round trip, no BEGIN and COMMIT around it). Only
the common case goes this way: the UPDATE's condition also says the job wants no webhook delivery
of the change. When it matches no row (a refusal or a replay to decide, or a webhook delivery to
record in the change's transaction), nothing changed and the caller takes the general path,
which decides, records or says why.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.db import is_unavailable
from services.core.ids import new_cuid
from services.core.models import Job
from services.jobs.domain import NewJob

# RETURNING the row as stored, and the version it had before (the sub-select reads the
# statement's snapshot): a change a client sees moves event_seq (the trigger's rule).
_RETURNING = "RETURNING jobs.*, (SELECT b.event_seq FROM jobs b WHERE b.id = $1) AS event_seq_before"


def _no_delivery_of(event: str) -> str:
    """The condition that the job wants no webhook delivery of event (one with a webhook whose
    filter takes it is left to the general path, which records the delivery with the change):
    WebhookOutbox.record's filter, negated, in SQL."""
    return f"NOT (webhook_url IS NOT NULL AND (cardinality(webhook_events) = 0 OR '{event}' = ANY(webhook_events)))"


START = f"""
UPDATE jobs SET status = 'processing', started_at = now(), worker_id = $2, progress_percent = 0,
    progress_stage = 'starting', heartbeat_at = now(), updated_at = now()
WHERE id = $1 AND status = 'queued' AND retry_count = $3 AND {_no_delivery_of("job.processing")}
{_RETURNING}
"""

COMPLETE = f"""
UPDATE jobs SET status = 'completed', result = $2, used_provider = $3, used_model = $4,
    generation_time_ms = $5, cost_usd = $6, completed_at = now(), progress_percent = 100,
    progress_stage = 'completed', error_message = NULL, updated_at = now()
WHERE id = $1 AND status = 'processing' AND ($7::integer IS NULL OR retry_count = $7)
    AND {_no_delivery_of("job.completed")}
{_RETURNING}
"""

# Plain creates (no idempotency key, webhook or quota: JobsService._plain) in one statement, the
# batch's columns as arrays; enqueued_at set when the creator publishes the message itself.
INSERT_QUEUED = """
INSERT INTO jobs (id, user_id, prompt, metadata, max_retries, queue, traceparent, status, enqueued_at)
SELECT new.id, new.user_id, new.prompt, new.metadata, new.max_retries, new.queue, new.traceparent, 'queued',
    CASE WHEN $8 THEN now() END
FROM unnest($1::varchar[], $2::varchar[], $3::text[], $4::jsonb[], $5::integer[], $6::varchar[], $7::varchar[])
    AS new(id, user_id, prompt, metadata, max_retries, queue, traceparent)
RETURNING jobs.*
"""

# Column name -> the model's attribute (the column "metadata" is the attribute metadata_).
_ATTRIBUTES = {column.name: attribute.key for attribute in Job.__mapper__.column_attrs for column in attribute.columns}


@dataclass(frozen=True)
class Moved:
    """The job as the transition left it, and whether a client sees the change."""

    job: Job
    seen: bool


class HotTransitions:
    """The hot statements: the batched INSERT of plain creates, and StartJob's and CompleteJob's
    UPDATE when it applies and the job wants no webhook delivery of it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start(self, job_id: str, *, worker_id: str, attempt: int) -> Moved | None:
        """queued -> processing on this attempt; None when the general path must decide."""
        return await self._move(START, job_id, worker_id, attempt)

    async def complete(
        self,
        job_id: str,
        *,
        result: Mapping[str, Any],
        used_provider: str,
        used_model: str,
        generation_time_ms: int,
        cost_usd: float | None,
        attempt: int | None,
    ) -> Moved | None:
        """processing -> completed with the stored video; None when the general path must decide."""
        # The pool's connections carry SQLAlchemy's JSONB codec, which takes the JSON text.
        stored = json.dumps(result)
        return await self._move(
            COMPLETE, job_id, stored, used_provider, used_model, generation_time_ms, cost_usd, attempt
        )

    async def insert_queued(self, news: Sequence[NewJob], *, claimed: bool) -> list[Job]:
        """Inserts plain queued jobs in one round trip; answers them in the order of news."""
        ids = [new_cuid() for _ in news]
        columns = (
            ids,
            [new.user_id for new in news],
            [new.prompt for new in news],
            [json.dumps(new.metadata) for new in news],
            [new.max_retries for new in news],
            [new.queue for new in news],
            [new.traceparent for new in news],
        )
        async with self._connection() as connection:
            rows = await connection.fetch(INSERT_QUEUED, *columns, claimed)
        by_id = {row["id"]: row for row in rows}
        return [_job_of(by_id[job_id]) for job_id in ids]

    async def _move(self, statement: str, *args: Any) -> Moved | None:
        async with self._connection() as connection:
            row = await connection.fetchrow(statement, *args)
        if row is None:
            return None
        return Moved(_job_of(row), seen=row["event_seq"] != row["event_seq_before"])

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The pool's asyncpg connection; one the database dropped, one cancelled mid-statement,
        or one an error left in a transaction, is taken out of the pool."""
        async with self._engine.connect() as pooled:
            raw = await pooled.get_raw_connection()
            connection: asyncpg.Connection = raw.driver_connection
            try:
                yield connection
            except BaseException as exc:
                if is_unavailable(exc) or isinstance(exc, asyncio.CancelledError):
                    # Cancelled mid-statement, the connection may still be answering it: not reused.
                    await pooled.invalidate()
                    raise
                if connection.is_closed() or connection.is_in_transaction():
                    # Broken under the statement (asyncpg's protocol in another state): an outage.
                    await pooled.invalidate()
                    raise ConnectionError(f"the database connection broke: {exc!r}") from exc
                raise


def _job_of(row: asyncpg.Record) -> Job:
    """The model of a row of jobs, outside any session (as the ORM's would be after commit)."""
    return Job(**{_ATTRIBUTES[name]: value for name, value in row.items() if name in _ATTRIBUTES})
