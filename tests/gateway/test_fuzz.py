"""Fuzzing the REST API through the edge with schemathesis: no 5xx, every answer as documented;
and a test for each bug that the fuzzing found."""

from __future__ import annotations

from typing import Any

from services.core.providers.registry import NAME_PATTERN
from tests.gateway.conftest import Gateway

TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}


NOT_JSON = [
    ("/api/v1/jobs", b'{"userId": "u", "prompt": "\xff\xfe"}', "the body is not UTF-8"),
    ("/api/v1/jobs", b"[" * 5000, "the body is nested too deeply"),
    ("/api/v1/jobs", b'{"userId": "u", "prompt": "p", "maxRetries": NaN}', "NaN is not JSON"),
    ("/api/v1/jobs", b'{"userId": "u", "prompt": "p", "maxRetries": 1e999}', "1e999 is too large a number"),
    ("/api/v1/jobs", b'{"userId": "u", "prompt": "\\ud800"}', "a string holds a lone UTF-16 surrogate"),
    ("/api/v1/jobs", b'{"userId": "u", "prompt": "p", "maxRetries": 1' + b"0" * 5000 + b"}", "a number has too many"),
    ("/api/v1/providers/test", b'{"provider": "local", "timeout": Infinity}', "Infinity is not JSON"),
]


async def test_a_body_that_pythons_json_reads_but_json_forbids_is_422_not_400_or_500(gateway: Gateway) -> None:
    for path, body, problem in NOT_JSON:
        answer = await gateway.client.post(path, content=body, headers={"Content-Type": "application/json"})

        assert answer.status_code == 422, (body[:60], answer.text)
        [error] = answer.json()["detail"]
        assert (error["type"], error["loc"][0]) == ("json_invalid", "body")
        assert error["ctx"]["error"].startswith(problem)


async def test_a_number_field_takes_json_numbers_only_not_booleans_or_strings(gateway: Gateway) -> None:
    client = gateway.client
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("maxRetries", "/api/v1/jobs", {"userId": "u", "prompt": "p", "metadata": TINY}),
        ("timeout", "/api/v1/providers/test", {"provider": "local"}),
    ]
    for name, path, body in cases:
        for value in (True, False, "3", None):
            answer = await client.post(path, json={**body, name: value})
            assert answer.status_code == 422, (name, value, answer.text)
            assert answer.json()["detail"][0]["loc"] == ["body", name]

    integral = await client.post("/api/v1/jobs", json={"userId": "u", "prompt": "p", "maxRetries": 3.0})
    assert (integral.status_code, integral.json()["maxRetries"]) == (201, 3)


async def test_a_provider_name_is_checked_at_the_edge_by_the_pattern_the_schema_shows(gateway: Gateway) -> None:
    spec = (await gateway.client.get("/openapi.json")).json()
    answer = await gateway.client.post("/api/v1/providers/test", json={"provider": "Local Ümlaut"})

    assert spec["components"]["schemas"]["ProviderTest"]["properties"]["provider"]["pattern"] == NAME_PATTERN
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "string_pattern_mismatch"
    assert answer.json()["detail"][0]["loc"] == ["body", "provider"]


async def test_metadata_nested_deeper_than_64_is_refused_so_that_no_stored_job_fails_to_answer(
    gateway: Gateway,
) -> None:
    client = gateway.client

    def nested(depth: int) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for _ in range(depth - 1):
            value = {"a": value}
        return value

    deep = await client.post("/api/v1/jobs", json={"userId": "deep", "prompt": "p", "metadata": nested(65)})
    ok = await client.post("/api/v1/jobs", json={"userId": "deep", "prompt": "p", "metadata": nested(64)})

    assert deep.status_code == 422 and deep.json()["detail"][0]["loc"] == ["body", "metadata"]
    assert ok.status_code == 201, ok.text
    assert (await client.get(f"/api/v1/jobs/{ok.json()['id']}")).json()["metadata"] == nested(64)
    assert (await client.get("/api/v1/jobs", params={"userId": "deep"})).json()["total"] == 1


async def test_a_405_lists_every_method_of_the_path_in_allow(gateway: Gateway) -> None:
    for method, path, allowed in [
        ("PUT", "/api/v1/jobs", "GET, POST"),
        ("PATCH", "/api/v1/jobs/any", "DELETE, GET"),
        ("PUT", "/health", "GET"),
    ]:
        answer = await gateway.client.request(method, path)

        assert (answer.status_code, answer.headers["Allow"]) == (405, allowed)
