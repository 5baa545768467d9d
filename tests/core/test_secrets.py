"""Production secret rules and the keys derived from SECRET_KEY."""

from __future__ import annotations

import pytest

from services.core import secrets


def test_hkdf_matches_rfc_5869_test_case_1() -> None:
    okm = secrets.hkdf_sha256(bytes([0x0B] * 22), salt=bytes(range(0x0D)), info=bytes(range(0xF0, 0xFA)), length=42)

    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_hkdf_without_salt_matches_rfc_5869_test_case_3() -> None:
    okm = secrets.hkdf_sha256(bytes([0x0B] * 22), info=b"", length=42)

    assert okm.hex() == ("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")


def test_each_purpose_derives_its_own_key() -> None:
    key = "k" * 16 + "0123456789abcdef"
    derived = {secrets.derive(key, p) for p in (secrets.WEBHOOK_SIGNING, secrets.MEDIA_URLS, secrets.SERVICE_TOKEN)}

    assert len(derived) == 3
    assert all(len(d) == 32 for d in derived)
    assert secrets.derive(key, secrets.MEDIA_URLS) == secrets.derive(key, secrets.MEDIA_URLS)
    assert secrets.derive(key + "x", secrets.MEDIA_URLS) != secrets.derive(key, secrets.MEDIA_URLS)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "must be set"),
        ("short-key", "at least 32"),
        ("x" * 40, "random"),
        ("0123456" * 5, "random"),
        ("REPLACE_ME_with_a_real_value_0123456789", "placeholder"),
        ("changeme-3f9a1c7e5b2d4f6a8c0e1d3b5a7f9c2e", "placeholder"),
        ("Your-API-Key-Here-3f9a1c7e5b2d4f6a8c0e1d3b", "placeholder"),
        ("the-example", "example value"),
    ],
)
def test_weak_secrets_are_refused_with_the_reason(value: str, reason: str) -> None:
    problem = secrets.secret_problem(value, examples=["the-example"])

    assert problem is not None and reason in problem


def test_a_random_secret_of_32_characters_passes() -> None:
    assert secrets.secret_problem("3f9a1c7e5b2d4f6a8c0e1d3b5a7f9c2e") is None
