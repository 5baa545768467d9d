"""Exact list totals: job_counts holds how many jobs each (user, status) has, kept by triggers.

A list's `total` was a COUNT(*) over the filter's index, which grows with the user's jobs (15-37
ms for 150,000). It is now the sum of at most five rows per user (one per status).

The triggers are statement-level with transition tables: one statement (a batch of creates, the
reaper's UPDATE, a retention sweep's DELETE, a bulk load) changes the counters with one UPSERT
of its net change per (user, status), in (user, status) order. Every writer locks counter rows
in that one order, so concurrent statements wait for each other but never deadlock, and a
count is never lost (each UPSERT adds to the row as committed). A counter row whose count
falls to 0 stays, so that a user's next job updates it instead of inserting it again.

Every writer is counted, whoever issues the statement (the service, the dispatcher, retention,
an operator); a TRUNCATE of jobs empties the counters with it. The backfill runs after the
triggers exist, in the migration's transaction: CREATE TRIGGER locks jobs against writes until
the commit, so no job is counted twice or missed.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# (function, trigger event, transition tables, the net change of the statement as (user_id, status, delta) rows)
_CHANGES = (
    ("job_counts_insert", "INSERT", "NEW TABLE AS added", "SELECT user_id, status, 1 AS delta FROM added"),
    ("job_counts_delete", "DELETE", "OLD TABLE AS removed", "SELECT user_id, status, -1 AS delta FROM removed"),
    (
        "job_counts_update",
        "UPDATE",
        "OLD TABLE AS before NEW TABLE AS after",
        # Only rows whose user or status changed; a heartbeat's UPDATE writes nothing.
        """SELECT b.user_id, b.status, -1 AS delta FROM before b JOIN after a USING (id)
           WHERE (a.user_id, a.status) IS DISTINCT FROM (b.user_id, b.status)
           UNION ALL
           SELECT a.user_id, a.status, 1 FROM before b JOIN after a USING (id)
           WHERE (a.user_id, a.status) IS DISTINCT FROM (b.user_id, b.status)""",
    ),
)


def _function(name: str, changes: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_counts AS counted (user_id, status, n)
  SELECT user_id, status, sum(delta) FROM ({changes}) AS change
  GROUP BY user_id, status HAVING sum(delta) <> 0
  ORDER BY user_id, status
  ON CONFLICT (user_id, status) DO UPDATE SET n = counted.n + EXCLUDED.n;
  RETURN NULL;
END
$$
"""


_TRUNCATE = """
CREATE FUNCTION job_counts_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM job_counts;
  RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "job_counts",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("n", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("user_id", "status", name="pk_job_counts"),
    )
    for name, event, tables, changes in _CHANGES:
        op.execute(_function(name, changes))
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON jobs REFERENCING {tables} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    op.execute(_TRUNCATE)
    op.execute("CREATE TRIGGER job_counts_truncate AFTER TRUNCATE ON jobs EXECUTE FUNCTION job_counts_truncate()")
    op.execute("INSERT INTO job_counts (user_id, status, n) SELECT user_id, status, count(*) FROM jobs GROUP BY 1, 2")


def downgrade() -> None:
    for name in ("job_counts_insert", "job_counts_delete", "job_counts_update", "job_counts_truncate"):
        op.execute(f"DROP TRIGGER {name} ON jobs")
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_table("job_counts")
