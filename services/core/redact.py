"""Text that may hold a secret, fit to show: URLs with their passwords masked.

A DATABASE_URL or REDIS_URL carries its password (postgresql://user:password@host/db), and so can
a query string (?password=..., a webhook's ?token=...). Banners and log lines show them masked.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@ -> scheme://user:***@ (the user stays: it helps, and is no secret).
_USERINFO = re.compile(r"(?P<prefix>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):[^@\s]*@")
# ?password=... or &token=... in a query string.
_QUERY_SECRET = re.compile(
    r"(?P<prefix>[?&](?:password|passwd|pass|pwd|sslpassword|secret|token|access_token|api_key|apikey|key"
    r"|signature|sig|x-amz-signature|x-amz-security-token)=)"
    r"[^&#\s\"']*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """text with the password of every URL in it, and every secret-looking query parameter,
    replaced by ***."""
    if "@" in text:
        text = _USERINFO.sub(rf"\g<prefix>:{MASK}@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(rf"\g<prefix>{MASK}", text)
    return text
