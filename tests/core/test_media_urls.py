"""Signed media URLs: what a signature covers, when it expires, what is refused and why."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import parse_qs, urlsplit

import pytest

from services.core import media_urls
from services.core.media_urls import MediaUrlRefused, MediaUrlSigner
from services.core.secrets import MEDIA_URLS, derive, urlsafe
from services.core.settings import MAX_TTL_SECONDS, CoreSettings, load_settings
from services.core.storage import create_storage
from services.core.storage.local import LocalMediaStorage

SECRET_KEY = "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f"
KEY = "cmwwxjck83noow87bhzi07al8.mp4"
NOW = 1_800_000_000
SIGNER = MediaUrlSigner(key=derive(SECRET_KEY, MEDIA_URLS), ttl_seconds=3600)


class Query(TypedDict):
    """The two query parameters of a signed URL."""

    expires: str
    signature: str


def parsed(query: str) -> Query:
    """The parameters of a URL's query."""
    values = {name: found[0] for name, found in parse_qs(query, strict_parsing=True).items()}
    assert set(values) == {"expires", "signature"}, query
    return Query(expires=values["expires"], signature=values["signature"])


def signed(key: str = KEY, *, now: float = NOW, signer: MediaUrlSigner = SIGNER) -> Query:
    """The query parameters of a URL of key signed at now."""
    return parsed(signer.sign(key, now=now))


def refusal(
    key: str = KEY, *, expires: str | None = None, signature: str | None = None, now: float = NOW
) -> media_urls.Reason:
    """Why SIGNER refuses key's URL with that query."""
    with pytest.raises(MediaUrlRefused) as refused:
        SIGNER.check(key, expires=expires, signature=signature, now=now)
    return refused.value.reason


def test_a_signed_url_is_valid_until_its_ttl_runs_out() -> None:
    query = signed()

    assert SIGNER.check(KEY, **query, now=NOW) == NOW + 3600
    assert SIGNER.check(KEY, **query, now=NOW + 3599) == NOW + 3600
    assert refusal(**query, now=NOW + 3600) == "expired"
    assert refusal(**query, now=NOW + 86400) == "expired"


def test_the_signature_is_hmac_sha256_of_key_and_expiry_with_the_media_urls_key() -> None:
    query = signed()

    message = f"{KEY}\n{NOW + 3600}".encode()
    expected = hmac.new(derive(SECRET_KEY, MEDIA_URLS), message, hashlib.sha256).digest()
    assert query == {"expires": str(NOW + 3600), "signature": urlsafe(expected)}
    assert len(query["signature"]) == 43 and "=" not in query["signature"]


def test_a_tampered_signature_is_refused() -> None:
    query = signed()
    flipped = ("A" if query["signature"][0] != "A" else "B") + query["signature"][1:]

    assert refusal(expires=query["expires"], signature=flipped) == "bad_signature"
    assert refusal(expires=query["expires"], signature=query["signature"][:-1]) == "bad_signature"
    assert refusal(expires=query["expires"], signature=query["signature"] + "A") == "bad_signature"
    assert refusal(expires=query["expires"], signature="é" * 43) == "bad_signature"
    assert refusal(expires=query["expires"]) == "bad_signature"


def test_a_tampered_expiry_is_refused() -> None:
    query = signed()

    assert refusal(expires=str(NOW + 7200), signature=query["signature"]) == "bad_signature"
    assert refusal(expires=str(NOW + 3599), signature=query["signature"]) == "bad_signature"


def test_a_signature_of_another_key_or_secret_is_refused() -> None:
    other_secret = MediaUrlSigner(key=derive(SECRET_KEY + "x", MEDIA_URLS), ttl_seconds=3600)

    assert refusal(**signed("cmwwxjck83noow87bhzi07al8-2.mp4")) == "bad_signature"
    assert refusal(**signed(signer=other_secret)) == "bad_signature"


@pytest.mark.parametrize(
    "expires",
    ["soon", "", "-1", "+1800003600", "1800003600.0", "01800003600", " 1800003600", "١٨٠٠٠٠٣٦٠٠", "9" * 13, "9" * 5000],
)
def test_an_expiry_that_is_not_plain_unix_seconds_is_refused(expires: str) -> None:
    assert refusal(expires=expires, signature=signed()["signature"]) == "bad_expiry"


def test_an_expiry_further_ahead_than_the_longest_ttl_is_refused_even_when_signed() -> None:
    far = NOW + MAX_TTL_SECONDS + media_urls.CLOCK_SKEW_SECONDS + 1
    week = MediaUrlSigner(key=SIGNER.key, ttl_seconds=MAX_TTL_SECONDS)

    assert refusal(expires=str(far), signature=SIGNER.signature(KEY, far)) == "bad_expiry"
    assert SIGNER.check(KEY, **signed(signer=week), now=NOW) == NOW + MAX_TTL_SECONDS


def test_an_unsigned_url_is_refused_as_unsigned() -> None:
    assert refusal() == "unsigned"


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    query = signed()

    SIGNER.check(KEY, **query, now=NOW)
    refusal(expires=query["expires"], signature="A" * 43)

    assert compared == [(query["signature"], query["signature"]), ("A" * 43, query["signature"])]


def test_a_refusal_names_the_rule_and_nothing_secret() -> None:
    query = signed()
    reasons = {}
    for reason, expires, signature, now in [
        ("unsigned", None, None, NOW),
        ("bad_expiry", "soon", query["signature"], NOW),
        ("bad_signature", query["expires"], "A" * 43, NOW),
        ("expired", query["expires"], query["signature"], NOW + 7200),
    ]:
        with pytest.raises(MediaUrlRefused) as refused:
            SIGNER.check(KEY, expires=expires, signature=signature, now=now)
        reasons[reason] = str(refused.value)
        assert refused.value.reason == reason

    assert "not signed" in reasons["unsigned"] and "expired" in reasons["expired"]
    assert "expires" in reasons["bad_expiry"] and "signature" in reasons["bad_signature"]
    for message in reasons.values():
        assert KEY not in message and query["signature"] not in message and query["expires"] not in message


def test_the_local_backend_stores_the_bare_path_and_gives_out_signed_urls(tmp_path: Path) -> None:
    storage = create_storage(tmp_path, CoreSettings(_env_file=None, secret_key=SECRET_KEY, media_url_ttl_seconds=120))
    assert isinstance(storage, LocalMediaStorage)
    partial = storage.partial_path(KEY)
    partial.write_bytes(b"video")

    stored = storage.store(partial, KEY)
    before = int(time.time())
    url = storage.fresh_url(KEY)

    assert stored.url == f"/media/{KEY}"
    assert url is not None and urlsplit(url).path == f"/media/{KEY}"
    query = parsed(urlsplit(url).query)
    assert before + 120 <= SIGNER.check(KEY, **query) <= int(time.time()) + 120


def test_a_local_backend_without_a_signer_gives_the_stored_url(tmp_path: Path) -> None:
    assert LocalMediaStorage(tmp_path).fresh_url(KEY) is None


def test_media_url_ttl_seconds_defaults_to_an_hour() -> None:
    assert CoreSettings(_env_file=None).media_url_ttl_seconds == 3600


@pytest.mark.parametrize("value", ["59", str(MAX_TTL_SECONDS + 1), "-1", "an hour"])
def test_a_media_url_ttl_out_of_bounds_stops_the_process_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("MEDIA_URL_TTL_SECONDS", value)

    with pytest.raises(SystemExit):
        load_settings(CoreSettings)

    assert "configuration error: MEDIA_URL_TTL_SECONDS:" in capsys.readouterr().err
