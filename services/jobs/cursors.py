"""List cursors: where a page of jobs ends, signed so that it only continues the same list.

A cursor holds the sort key of a page's last job (created_at in microseconds, id) and an
HMAC-SHA256 over that key and the list's filter (user, status), keyed with the LIST_CURSORS key
derived from SECRET_KEY. Clients cannot read or forge one; one that is altered, or given with
other filters than it was made for, is refused naming `cursor`. It names a place in a list the
caller may read anyway, so it needs no expiry and holds across replicas and restarts; rotating
SECRET_KEY turns the cursors out then (the client starts again from the first page).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from datetime import UTC, datetime, timedelta

from services.core.errors import InvalidArgument
from services.core.job.rules import JOB_ID, LIST_CURSOR, LIST_CURSOR_MAX_CHARS
from services.core.job.status import JobStatus
from services.core.secrets import LIST_CURSORS, derive, urlsafe
from services.jobs.domain import ListPosition

_VERSION = 1
_HEAD = struct.Struct(">Bq")  # the format's version, then created_at in microseconds since the epoch
_MAC_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_REFUSED = (
    "is not a nextCursor of this list: it was altered, made for another userId or status, "
    "or made before SECRET_KEY changed; start again without a cursor"
)


class ListCursors:
    """Makes and reads the cursors of job lists with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_secret(cls, secret_key: str) -> ListCursors:
        """The cursors of SECRET_KEY's LIST_CURSORS key."""
        return cls(derive(secret_key, LIST_CURSORS))

    def make(self, position: ListPosition, *, user_id: str | None, status: JobStatus | None) -> str:
        """The cursor of the page after position, in the list of these filters."""
        micros = (position.created_at - _EPOCH) // _MICROSECOND
        body = _HEAD.pack(_VERSION, micros) + position.job_id.encode("ascii")
        return urlsafe(body + self._mac(body, user_id, status))

    def read(self, cursor: str, *, user_id: str | None, status: JobStatus | None) -> ListPosition:
        """Where the page that cursor asks for starts, or InvalidArgument naming `cursor`."""
        if not LIST_CURSOR.fullmatch(cursor):
            raise InvalidArgument("cursor", f"must be 1-{LIST_CURSOR_MAX_CHARS} characters of [A-Za-z0-9_-]")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise InvalidArgument("cursor", _REFUSED) from None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(body) <= _HEAD.size or not hmac.compare_digest(mac, self._mac(body, user_id, status)):
            raise InvalidArgument("cursor", _REFUSED)
        version, micros = _HEAD.unpack_from(body)
        job_id = body[_HEAD.size :].decode("ascii", errors="replace")
        if version != _VERSION or not JOB_ID.fullmatch(job_id):
            raise InvalidArgument("cursor", _REFUSED)
        return ListPosition(created_at=_EPOCH + micros * _MICROSECOND, job_id=job_id)

    def _mac(self, body: bytes, user_id: str | None, status: JobStatus | None) -> bytes:
        # A user id never holds NUL (services/core/job/rules.py), so the parts cannot run together.
        scope = f"{user_id or ''}\x00{status.value if status else ''}\x00".encode()
        return hmac.new(self._key, scope + body, hashlib.sha256).digest()[:_MAC_BYTES]
