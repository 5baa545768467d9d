"""List cursors: they carry their position exactly and continue only the list they were made for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.core.errors import InvalidArgument
from services.core.job.status import JobStatus
from services.jobs.cursors import ListCursors
from services.jobs.domain import ListPosition

CURSORS = ListCursors.from_secret("5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f-secret")
POSITION = ListPosition(
    created_at=datetime(2026, 12, 3, 8, 30, 1, 123456, tzinfo=UTC), job_id="cm4abcdefghij0123456789kl"
)


def refused(cursor: str, *, user_id: str | None = "u1", status: JobStatus | None = None) -> str:
    """The reason a cursor is refused; it always names `cursor`."""
    with pytest.raises(InvalidArgument) as caught:
        CURSORS.read(cursor, user_id=user_id, status=status)
    assert caught.value.field == "cursor"
    return caught.value.description


def test_a_cursor_reads_back_its_position_to_the_microsecond() -> None:
    cursor = CURSORS.make(POSITION, user_id="u1", status=JobStatus.COMPLETED)

    assert CURSORS.read(cursor, user_id="u1", status=JobStatus.COMPLETED) == POSITION
    assert len(cursor) < 100 and "u1" not in cursor


def test_a_cursor_is_refused_by_another_list() -> None:
    cursor = CURSORS.make(POSITION, user_id="u1", status=None)

    refused(cursor, user_id="u2")
    refused(cursor, user_id=None)
    refused(cursor, status=JobStatus.QUEUED)


def test_a_cursor_of_another_secret_key_is_refused() -> None:
    other = ListCursors.from_secret("0f9e8d7c6b5a49382716a5b4c3d2e1f0-other")

    refused(other.make(POSITION, user_id="u1", status=None))


def test_every_altered_character_is_refused() -> None:
    cursor = CURSORS.make(POSITION, user_id="u1", status=None)

    for index, character in enumerate(cursor):
        refused(cursor[:index] + ("A" if character != "A" else "B") + cursor[index + 1 :])
    refused(cursor[:-1])
    refused(cursor + "A")


@pytest.mark.parametrize("cursor", ["", "a", "====", "not a cursor", "é", "x" * 129, "AAAA" * 20])
def test_garbage_is_refused(cursor: str) -> None:
    refused(cursor)
