"""SQLAlchemy access to the webhook_deliveries table; no commits here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.ids import new_cuid
from services.core.models import Job, WebhookDelivery

# A delivery's origin (services/jobs/webhooks/hosts.py): scheme://host[:port] of its URL,
# lower-cased, without a default port. `\:` keeps SQLAlchemy from reading `:443` as a parameter.
ORIGIN = r"""regexp_replace(regexp_replace(
    lower(substring(url from '^[^:/?#]+://[^/?#]*')), '^(https://.*)\:443$', '\1'), '^(http://.*)\:80$', '\1')"""
# Due rows: pending ones whose time came, and delivering ones whose sender's lease ran out (it
# crashed or was stopped mid-attempt), but none to a blocked origin (at its cap, or its circuit
# open) unless its circuit is open and its window over: the sender makes those dead at once.
# Each claim counts an attempt and takes a lease; due_at is kept to put a row back.
_CLAIM = text(
    f"""
    WITH due AS (
        SELECT id, next_attempt_at AS due_at FROM webhook_deliveries
        WHERE state IN ('pending', 'delivering') AND next_attempt_at <= now()
            AND ({ORIGIN} <> ALL(:blocked)
                OR ({ORIGIN} = ANY(:open) AND now() >= scheduled_at + make_interval(secs => :retry_for)))
        ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)
    UPDATE webhook_deliveries AS d SET
        state = 'delivering', attempts = d.attempts + 1, updated_at = now(),
        next_attempt_at = now() + make_interval(secs => :lease)
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.job_id, d.event_id, d.event_type, d.payload, d.url, d.attempts, d.created_at,
        due.due_at, {ORIGIN} AS origin,
        now() >= d.scheduled_at + make_interval(secs => :retry_for) AS window_over
    """
).bindparams(bindparam("blocked", type_=ARRAY(Text)), bindparam("open", type_=ARRAY(Text)))


@dataclass(frozen=True)
class Claimed:
    """A delivery this sender holds for one attempt."""

    id: str
    job_id: str
    event_id: str
    event_type: str
    # The job's JSON at the event: the body's `data`.
    payload: dict[str, Any]
    url: str
    attempts: int
    # When the event happened: the body's `timestamp`.
    created_at: datetime
    # Whether the retry window is over: a failure of this attempt makes the delivery dead.
    last_chance: bool
    # Where it goes: scheme://host[:port] (ORIGIN).
    origin: str = ""
    # When it was due before this claim: where a delivery put back goes.
    due_at: datetime | None = None


async def insert_delivery(session: AsyncSession, job: Job, *, event: str, payload: dict[str, Any]) -> None:
    """Adds a pending delivery of event for the job, due now."""
    assert job.webhook_url is not None
    await session.execute(
        insert(WebhookDelivery).values(
            id=new_cuid(),
            job_id=job.id,
            event_id=f"evt_{new_cuid()}",
            event_type=event,
            payload=payload,
            url=job.webhook_url,
        )
    )


async def claim_due(
    session: AsyncSession,
    *,
    limit: int,
    lease: float,
    retry_for: float,
    blocked: Sequence[str] = (),
    open_circuits: Sequence[str] = (),
) -> list[Claimed]:
    """Claims up to limit due deliveries, none to a blocked origin but those to an open circuit
    whose window is over (FOR UPDATE SKIP LOCKED: replicas share the work)."""
    values = {
        "limit": limit,
        "lease": lease,
        "retry_for": retry_for,
        "blocked": list(blocked),
        "open": list(open_circuits),
    }
    rows = (await session.execute(_CLAIM, values)).all()
    return [
        Claimed(
            id=row.id,
            job_id=row.job_id,
            event_id=row.event_id,
            event_type=row.event_type,
            payload=row.payload,
            url=row.url,
            attempts=row.attempts,
            created_at=row.created_at,
            last_chance=bool(row.window_over),
            origin=row.origin,
            due_at=row.due_at,
        )
        for row in rows
    ]


def _held(claimed: Claimed) -> Any:
    """This attempt's row: still delivering and on the same attempt (not taken over since)."""
    return update(WebhookDelivery).where(
        WebhookDelivery.id == claimed.id,
        WebhookDelivery.state == "delivering",
        WebhookDelivery.attempts == claimed.attempts,
    )


async def mark_delivered(session: AsyncSession, claimed: Claimed, *, status_code: int) -> bool:
    """delivering -> delivered; False when this attempt no longer holds the row."""
    statement = _held(claimed).values(
        state="delivered",
        last_status_code=status_code,
        last_error=None,
        delivered_at=func.now(),
        updated_at=func.now(),
    )
    return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]


async def mark_failed(
    session: AsyncSession, claimed: Claimed, *, status_code: int | None, error: str, retry_in: float | None
) -> bool:
    """delivering -> pending again in retry_in seconds, or dead when retry_in is None."""
    values: dict[str, Any] = {"last_status_code": status_code, "last_error": error[:1000], "updated_at": func.now()}
    if retry_in is None:
        values["state"] = "dead"
    else:
        values["state"] = "pending"
        values["next_attempt_at"] = func.now() + timedelta(seconds=retry_in)
    return bool((await session.execute(_held(claimed).values(**values))).rowcount)  # type: ignore[attr-defined]


async def put_back(session: AsyncSession, claimed: Claimed) -> bool:
    """delivering -> pending, due when it was before the claim, whose attempt is not counted."""
    statement = _held(claimed).values(
        state="pending",
        attempts=WebhookDelivery.attempts - 1,
        next_attempt_at=claimed.due_at or func.now(),
        updated_at=func.now(),
    )
    return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]


async def mark_short_circuited(session: AsyncSession, claimed: Claimed, *, error: str) -> bool:
    """delivering -> dead without an attempt (its window is over and its host's circuit open)."""
    statement = _held(claimed).values(
        state="dead", attempts=WebhookDelivery.attempts - 1, last_error=error, updated_at=func.now()
    )
    return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]


async def list_for_job(
    session: AsyncSession, job_id: str, *, skip: int, take: int
) -> tuple[Sequence[WebhookDelivery], int]:
    """One page of a job's deliveries, oldest first, and their total."""
    page = (
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        .offset(skip)
        .limit(take)
    )
    total = select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
    return (await session.scalars(page)).all(), int(await session.scalar(total) or 0)


async def list_by_state(
    session: AsyncSession, state: str | None, *, skip: int, take: int
) -> tuple[Sequence[WebhookDelivery], int]:
    """One page of every job's deliveries (in state, when given), newest first, and their total."""
    conditions = [] if state is None else [WebhookDelivery.state == state]
    page = (
        select(WebhookDelivery)
        .where(*conditions)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .offset(skip)
        .limit(take)
    )
    total = select(func.count()).select_from(WebhookDelivery).where(*conditions)
    return (await session.scalars(page)).all(), int(await session.scalar(total) or 0)


async def reschedule(session: AsyncSession, delivery_id: str) -> WebhookDelivery | None:
    """A delivery not in flight -> pending, due now, attempts and retry window reset."""
    statement = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state != "delivering")
        .values(
            state="pending",
            attempts=0,
            next_attempt_at=func.now(),
            scheduled_at=func.now(),
            delivered_at=None,
            updated_at=func.now(),
        )
        .returning(WebhookDelivery)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).one_or_none()


async def get_delivery(session: AsyncSession, delivery_id: str) -> WebhookDelivery | None:
    """The delivery with this id, if any."""
    return await session.get(WebhookDelivery, delivery_id)


async def count_unfinished(session: AsyncSession) -> dict[str, int]:
    """How many deliveries are pending, delivering and dead (delivered ones are not counted)."""
    statement = (
        select(WebhookDelivery.state, func.count())
        .where(WebhookDelivery.state.in_(("pending", "delivering", "dead")))
        .group_by(WebhookDelivery.state)
    )
    rows = (await session.execute(statement)).all()
    return {state: int(count) for state, count in rows}
