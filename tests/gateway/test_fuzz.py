"""Fuzzing the REST API through the edge with schemathesis: no 5xx, every answer as documented;
and a test for each bug that the fuzzing found."""

from __future__ import annotations

from typing import Any

from tests.gateway.conftest import Gateway

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
