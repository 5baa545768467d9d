"""Webhook signing: WEBHOOK_SECRET's form, rotation, the derived secret and the body's bytes."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.core import secrets, webhooks
from services.core.settings import load_settings
from services.jobs.settings import JobsSettings

SECRET_KEY = "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f"
API_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
CURRENT = "whsec_" + base64.b64encode(bytes(range(32))).decode()
PREVIOUS = "whsec_" + base64.b64encode(bytes(range(100, 124))).decode()


def settings(**values: object) -> JobsSettings:
    """Settings from values over real-looking keys, without .env."""
    return JobsSettings(_env_file=None, **{"secret_key": SECRET_KEY, "api_key": API_KEY, **values})  # type: ignore[arg-type]


def headers_for(keys: list[bytes], body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return webhooks.request_headers(keys, event_id="evt_c1", timestamp=stamp, body=body)


def test_a_signed_request_passes_the_reference_verifier_and_a_changed_one_does_not() -> None:
    keys = webhooks.signing_keys(settings(webhook_secret=CURRENT))
    body = b'{"type":"job.completed","timestamp":"2026-01-01T00:00:00.000000Z","data":{"id":"c1"}}'
    headers = headers_for(keys, body)

    assert Webhook(CURRENT).verify(body, headers)["data"] == {"id": "c1"}
    assert headers["webhook-signature"].startswith("v1,") and " " not in headers["webhook-signature"]
    for changed_body, changed_headers in [
        (body.replace(b"c1", b"c2"), headers),
        (body, {**headers, "webhook-id": "evt_c2"}),
        (body, {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}),
        (body, headers_for(keys, body, timestamp=int(time.time()) - 600)),
    ]:
        with pytest.raises(WebhookVerificationError):
            Webhook(CURRENT).verify(changed_body, changed_headers)


@pytest.mark.parametrize("separator", [" ", ",", ", "])
def test_during_a_rotation_both_secrets_sign_current_first(separator: str) -> None:
    configured = settings(webhook_secret=f"{CURRENT}{separator}{PREVIOUS}")
    body = b'{"type":"job.queued"}'
    headers = headers_for(webhooks.signing_keys(configured), body)

    assert webhooks.signing_secrets(configured) == [CURRENT, PREVIOUS]
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(CURRENT).verify(body, headers)
    Webhook(PREVIOUS).verify(body, headers)


def test_unset_the_one_secret_is_derived_from_the_secret_key() -> None:
    [derived] = webhooks.signing_secrets(settings())
    [other] = webhooks.signing_secrets(settings(secret_key="another-secret-key-0123456789abcdef"))

    assert derived == "whsec_" + base64.b64encode(secrets.derive(SECRET_KEY, secrets.WEBHOOK_SIGNING)).decode()
    assert len(base64.b64decode(derived.removeprefix("whsec_"), validate=True)) == 32
    assert other != derived
    assert webhooks.signing_secrets(settings(webhook_secret="  ")) == [derived], "blank means unset"


@pytest.mark.parametrize(
    "value",
    [
        "change-me-webhook-secret",
        CURRENT.removeprefix("whsec_"),
        "whsec_not*base64*at*all*but*long*enough*to*pass",
        CURRENT.rstrip("="),
        "whsec_" + base64.b64encode(bytes(23)).decode(),
        "whsec_" + base64.b64encode(bytes(65)).decode(),
        f"{CURRENT} {PREVIOUS} {CURRENT}",
        "whsec_",
    ],
)
def test_a_malformed_webhook_secret_stops_the_service_naming_it_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", value)

    with pytest.raises(SystemExit) as exited:
        load_settings(JobsSettings)

    error = capsys.readouterr().err
    assert exited.value.code == 2
    assert "configuration error: WEBHOOK_SECRET:" in error and "whsec_" in error
    quoted = value.removeprefix("whsec_")[:12]
    assert not quoted or quoted not in error, "the value is never repeated"


def test_production_refuses_a_typed_in_secret_but_takes_a_random_one(monkeypatch: pytest.MonkeyPatch) -> None:
    typed = "whsec_" + "changemechangemechangemechangeme"
    patterned = "whsec_" + base64.b64encode(b"a" * 32).decode()
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("API_KEY", API_KEY)

    for weak in (typed, patterned, f"{CURRENT} {patterned}"):
        monkeypatch.setenv("WEBHOOK_SECRET", weak)
        with pytest.raises(SystemExit):
            load_settings(JobsSettings)
    monkeypatch.setenv("WEBHOOK_SECRET", f"{CURRENT},{PREVIOUS}")
    assert len(webhooks.signing_keys(load_settings(JobsSettings))) == 2


def test_the_secrets_never_show_in_the_settings_repr() -> None:
    configured = settings(webhook_secret=f"{CURRENT} {PREVIOUS}")

    assert CURRENT not in repr(configured) and PREVIOUS not in repr(configured)
    assert isinstance(configured.webhook_secret, SecretStr)


@pytest.mark.parametrize(
    ("environment", "explicit", "allowed"),
    [
        ("development", None, True),
        ("test", None, True),
        ("staging", None, False),
        ("production", None, False),
        ("production", "true", True),
        ("development", "false", False),
    ],
)
def test_private_webhook_targets_are_allowed_by_default_only_in_development_and_test(
    monkeypatch: pytest.MonkeyPatch, environment: str, explicit: str | None, allowed: bool
) -> None:
    monkeypatch.setenv("APP_ENV", environment)
    monkeypatch.setenv("SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("API_KEY", API_KEY)
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    if explicit is None:
        monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE_TARGETS", raising=False)
    else:
        monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_TARGETS", explicit)

    assert load_settings(JobsSettings).webhook_allow_private_targets is allowed


def test_the_body_is_the_same_bytes_for_the_same_delivery_with_the_event_time_in_utc() -> None:
    moment = datetime(2026, 11, 26, 11, 0, 1, 300000, tzinfo=timezone(timedelta(hours=1)))
    data = {"id": "c1", "prompt": "un été", "metadata": {"b": 1, "a": [1.5, None]}}

    body = webhooks.envelope("job.completed", moment, data)

    assert body == webhooks.envelope("job.completed", moment.astimezone(UTC), dict(data))
    assert body.startswith(b'{"type":"job.completed","timestamp":"2026-11-26T10:00:01.300000Z","data":{"id":"c1"')
    assert "un été".encode() in body
