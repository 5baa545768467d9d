"""The dispatcher's SQL: each a claim of rows with `FOR UPDATE SKIP LOCKED`, so that any number
of jobs replicas can run it side by side, or a plain update of the claim."""

from __future__ import annotations

from sqlalchemy import text

CLAIM_DUE = text(
    """
    UPDATE jobs SET enqueued_at = now()
    WHERE id IN (
        SELECT id FROM jobs
        WHERE status = 'queued' AND enqueued_at IS NULL AND run_after <= now()
        ORDER BY run_after LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING id, queue, retry_count, traceparent
    """
)
PROMOTE = text(
    """
    UPDATE jobs
    SET queue = CASE queue WHEN 'low_priority' THEN 'default' ELSE 'high_priority' END,
        enqueued_at = now()
    WHERE id IN (
        SELECT id FROM jobs
        WHERE status = 'queued' AND enqueued_at IS NOT NULL AND queue <> 'high_priority'
          AND enqueued_at < now() - make_interval(secs => :age)
        ORDER BY enqueued_at LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING id, queue, retry_count, traceparent
    """
)
SWEEP = text(
    """
    UPDATE jobs SET enqueued_at = now()
    WHERE id IN (
        SELECT id FROM jobs
        WHERE status = 'queued' AND enqueued_at IS NOT NULL AND queue = ANY(:queues)
          AND enqueued_at < now() - make_interval(secs => :after)
        ORDER BY enqueued_at LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING id, queue, retry_count, traceparent
    """
)
# The reaper's candidates, locked; REAP then takes back those of them the round still may.
REAP_CANDIDATES = text(
    """
    SELECT id FROM jobs
    WHERE status = 'processing' AND heartbeat_at < now() - make_interval(secs => :lease)
    ORDER BY heartbeat_at LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
REAP = text(
    """
    UPDATE jobs SET
        status = CASE WHEN retry_count < max_retries THEN 'queued' ELSE 'failed' END,
        retry_count = CASE WHEN retry_count < max_retries THEN retry_count + 1 ELSE retry_count END,
        completed_at = CASE WHEN retry_count < max_retries THEN NULL ELSE now() END,
        error_message = :error,
        run_after = now(), enqueued_at = NULL, worker_id = NULL, heartbeat_at = NULL,
        progress_percent = 0, progress_stage = '', updated_at = now()
    WHERE id = ANY(:ids) AND status = 'processing'
    RETURNING id, status, retry_count, provider_task
    """
)
UNPUBLISH_ALL = text("UPDATE jobs SET enqueued_at = NULL WHERE status = 'queued' AND enqueued_at IS NOT NULL")
RELEASE = text("UPDATE jobs SET enqueued_at = NULL WHERE id = :id AND status = 'queued' AND retry_count = :attempt")
