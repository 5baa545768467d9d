"""The rules of what clients send about a job, written once: the patterns and bounds that the
jobs service enforces and the gateway's REST models declare (they import these objects)."""

from __future__ import annotations

import json
import re
from typing import Any

from services.core.errors import InvalidArgument

# Anchored, so that pydantic (which searches) and fullmatch read them alike.
USER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
USER_ID_RULE = "must be 1-128 characters of [A-Za-z0-9_.:@-]"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
JOB_ID = re.compile(r"^[a-z0-9]{1,32}$")
PROMPT_MAX_CHARS = 4000
ERROR_MAX_CHARS = 4000
MAX_RETRIES = 10
DEFAULT_MAX_RETRIES = 3
METADATA_MAX_BYTES = 16 * 1024
# Deeper JSON cannot be answered back (the serializers recurse); it is refused.
JSON_MAX_DEPTH = 64
TAKE_DEFAULT, TAKE_MAX = 20, 100
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
LIST_MAX_SKIP = 100_000
# A list's cursor (services/jobs/cursors.py): unpadded URL-safe base64, longer than any made.
LIST_CURSOR_MAX_CHARS = 128
LIST_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def validate_user_id(value: str, field: str = "user_id") -> str:
    """1-128 characters of [A-Za-z0-9_.:@-]."""
    if not USER_ID.fullmatch(value):
        raise InvalidArgument(field, USER_ID_RULE)
    return value


def validate_prompt(value: str) -> str:
    """1-4000 characters, not blank, no NUL."""
    if not value.strip():
        raise InvalidArgument("prompt", "must not be blank")
    if len(value) > PROMPT_MAX_CHARS:
        raise InvalidArgument("prompt", f"must be at most {PROMPT_MAX_CHARS} characters")
    if "\x00" in value:
        raise InvalidArgument("prompt", "must not contain NUL characters")
    return value


def validate_max_retries(value: int | None, *, default: int = DEFAULT_MAX_RETRIES) -> int:
    """0-10; the default when absent."""
    retries = default if value is None else value
    if not 0 <= retries <= MAX_RETRIES:
        raise InvalidArgument("max_retries", f"must be between 0 and {MAX_RETRIES}")
    return retries


def validate_idempotency_key(value: str) -> str | None:
    """None for no key; else 1-255 visible ASCII characters."""
    if value == "":
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidArgument("idempotency_key", "must be 1-255 visible ASCII characters")
    return value


def validate_label(value: str, *, field: str, max_chars: int) -> str:
    """1-max_chars printable characters (a worker id, a provider or model name)."""
    if not value or len(value) > max_chars or not value.isprintable():
        raise InvalidArgument(field, f"must be 1-{max_chars} printable characters")
    return value


def json_depth(value: Any) -> int:
    """How deep objects and arrays nest in value ({} is 1), without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def depth_problem(value: Any) -> str | None:
    """Why value nests too deep (None when it does not)."""
    return f"must be nested at most {JSON_MAX_DEPTH} deep" if json_depth(value) > JSON_MAX_DEPTH else None


def parse_json_object(text: str, *, field: str, max_bytes: int) -> dict[str, Any]:
    """A JSON object of at most max_bytes that PostgreSQL's jsonb can store; "" means {}."""
    if not text.strip():
        return {}
    if len(text) > 4 * max_bytes:
        raise InvalidArgument(field, f"must be at most {max_bytes} bytes of JSON")
    # Before parsing: json.loads recurses once per level, and thousands of levels would run the
    # whole process to its recursion limit (where any finalizer that runs then fails too).
    if _bracket_depth(text) > JSON_MAX_DEPTH:
        raise InvalidArgument(field, f"must be nested at most {JSON_MAX_DEPTH} deep")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(field, f"must be valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    try:
        encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError):
        raise InvalidArgument(field, "must be valid UTF-8 JSON") from None
    if len(encoded) > max_bytes:
        raise InvalidArgument(field, f"must be at most {max_bytes} bytes of JSON")
    if b"\\u0000" in encoded or b"\x00" in encoded:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def _bracket_depth(text: str) -> int:
    """How deep the brackets of JSON text nest, strings aside (an upper bound for bad JSON)."""
    deepest = depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")
