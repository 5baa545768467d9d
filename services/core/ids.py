"""CUID identifiers: 25 characters, starting with "c", roughly ordered by creation time."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import threading
import time

_BASE = 36
_BLOCK = 4
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_counter = itertools.count(secrets.randbelow(_BASE**_BLOCK))
_counter_lock = threading.Lock()
CUID_PATTERN = re.compile(r"^c[0-9a-z]{24}$")


def _base36(value: int, width: int) -> str:
    digits = []
    while value:
        value, digit = divmod(value, _BASE)
        digits.append(_DIGITS[digit])
    return "".join(reversed(digits)).rjust(width, "0")[-width:]


def _fingerprint() -> str:
    host = sum(socket.gethostname().encode()) + _BASE
    return _base36(os.getpid(), 2) + _base36(host, 2)


def new_cuid() -> str:
    """A new CUID: timestamp, counter, host fingerprint and randomness."""
    with _counter_lock:
        count = next(_counter) % _BASE**_BLOCK
    timestamp = _base36(time.time_ns() // 1_000_000, 8)
    random_part = _base36(secrets.randbelow(_BASE ** (2 * _BLOCK)), 2 * _BLOCK)
    return "c" + timestamp + _base36(count, _BLOCK) + _fingerprint() + random_part


def is_cuid(value: str) -> bool:
    """Whether value has the shape of a CUID."""
    return bool(CUID_PATTERN.match(value))
