"""Fuzzing the REST API through the edge with schemathesis: no 5xx, every answer as documented;
and a test for each bug that the fuzzing found."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import CheckFunction, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.core.job.rules import PROVIDER_NAME
from tests.gateway.conftest import Gateway, GatewayFactory
from tests.support.factories import unique_user

# No 5xx; every status, content type, header and body as /openapi.json documents it; and a
# request that breaks the documented schema is refused with a 4xx.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}
Operation = schemathesis.APIOperation[Any, Any, Any, Any]


@dataclass
class Seeds:
    """Real ids and video keys, so that operations on one reach more than 404."""

    read: list[str]
    delete: list[str]
    keys: list[str]

    def strategies(self, operation: Operation) -> list[st.SearchStrategy[Any]]:
        """Cases of operation on a seeded id or key, besides the generated (unknown) ones."""
        if "{job_id}" in operation.path:
            pool, name = (self.delete if operation.method.upper() == "DELETE" else self.read), "job_id"
        elif "{key}" in operation.path:
            pool, name = self.keys, "key"
        else:
            return []
        return [st.sampled_from(pool).flatmap(lambda value: operation.as_strategy(path_parameters={name: value}))]


@dataclass
class FuzzRun:
    """What a run sent and what came back."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    # Each distinct failure (operation, check, status) with how often it came, and its first report.
    failures: Counter[str] = field(default_factory=Counter)
    reports: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def fail(self, kind: str, report: str) -> None:
        self.failures[kind] += 1
        self.reports.setdefault(kind, report)

    def report(self) -> str:
        """Every distinct failure with its count and one full report, for the assertion message."""
        return "\n\n".join(f"{count} x {kind}\n{self.reports[kind]}" for kind, count in self.failures.most_common())

    def summary(self, seconds: float) -> str:
        """One line to quote: requests in all and per operation, statuses, 5xx answers, failures."""
        statuses = " ".join(f"{status}:{count}" for status, count in sorted(self.statuses.items()))
        operations = ", ".join(f"{label} {count}" for label, count in sorted(self.requests.items()))
        return (
            f"schemathesis {schemathesis.__version__}: {self.total} requests in {seconds:.1f} s, "
            f"{self.server_errors} answered 5xx, {self.failures.total()} failures; "
            f"statuses {statuses}; per operation: {operations}"
        )


def fuzz_operation(
    run: FuzzRun, strategy: st.SearchStrategy[Any], *, base_url: str, examples: int, checks: list[CheckFunction]
) -> None:
    """Sends every case the strategy generates and checks each answer, collecting the failures
    instead of stopping at the first, so that one run reports them all."""

    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.given(case=strategy)
    def send(case: schemathesis.Case[Operation]) -> None:
        try:
            response = case.call(base_url=base_url, session=session, timeout=60)
        except requests.RequestException as exc:
            run.fail(f"{case.operation.label}: {type(exc).__name__}", repr(exc))
            return
        run.requests[case.operation.label] += 1
        run.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                run.fail(f"{case.operation.label}: {failure.title} ({response.status_code})", str(group))

    # An operation whose only parameters are plain strings has no invalid case.
    with requests.Session() as session, contextlib.suppress(hypothesis.errors.Unsatisfiable):
        send()


def fuzz(base_url: str, *, examples: int, seeds: Seeds | None = None, checks: list[CheckFunction] = CHECKS) -> FuzzRun:
    """Every operation of the edge's /openapi.json: `examples` valid and `examples` invalid cases."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=10)
    run = FuzzRun()
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the document describes an operation it cannot be tested by
            run.fail(f"invalid schema: {result.err()}", str(result.err()))
            continue
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(generation_mode=mode)]
            if seeds and mode is GenerationMode.POSITIVE:
                strategies += seeds.strategies(operation)
            fuzz_operation(run, st.one_of(strategies), base_url=base_url, examples=examples, checks=checks)
    return run


async def wait_status(gateway: Gateway, job_id: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while (job := (await gateway.client.get(f"/api/v1/jobs/{job_id}")).json())["status"] != status:
            await asyncio.sleep(0.1)
    return dict(job)


async def seed(gateway: Gateway, gate: Path) -> Seeds:
    """Two finished jobs to read with their videos, one finished and one processing (held until
    gate exists) to delete."""
    client = gateway.client
    finished = [
        (await client.post("/api/v1/jobs", json={"userId": "fuzz-seed", "prompt": f"p{n}", "metadata": TINY})).json()
        for n in range(3)
    ]
    script = {"provider": "scripted", "modelInput": {"script": {"gate": str(gate)}}}
    held = (
        await client.post("/api/v1/jobs", json={"userId": "fuzz-seed", "prompt": "held", "metadata": script})
    ).json()
    done = [await wait_status(gateway, job["id"], "completed") for job in finished]
    await wait_status(gateway, held["id"], "processing")
    return Seeds(
        read=[job["id"] for job in done[:2]],
        delete=[done[2]["id"], held["id"]],
        keys=[urlsplit(job["result"]["videoUrl"]).path.rsplit("/", 1)[1] for job in done[:2]],
    )


async def run_fuzz(gateway: Gateway, capsys: pytest.CaptureFixture[str], **options: Any) -> FuzzRun:
    """fuzz() in a thread, so that this loop keeps serving the in-process services; prints the summary."""
    started = time.monotonic()
    run = await asyncio.to_thread(fuzz, str(gateway.client.base_url).rstrip("/"), **options)
    with capsys.disabled():
        print(f"\n{run.summary(time.monotonic() - started)}")  # noqa: T201 - the figure to quote
    return run


async def test_a_thousand_generated_requests_through_the_edge_get_no_5xx_and_only_documented_answers(
    gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = tmp_path / "gate"
    try:
        run = await run_fuzz(gateway, capsys, examples=150, seeds=await seed(gateway, gate))
    finally:
        gate.touch()

    assert not run.failures, run.report()
    assert run.server_errors == 0
    assert run.total >= 1000


async def test_with_the_jobs_and_providers_services_down_every_answer_is_still_documented(
    start_gateway: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway = await start_gateway()  # its own: this test stops the services
    await gateway.stack.server.stop(0)
    await gateway.stack.providers_server.stop(0)

    # A 503 is the contract's answer here, so only that it is documented is checked.
    run = await run_fuzz(gateway, capsys, examples=20, checks=CHECKS[1:])

    assert not run.failures, run.report()
    assert run.statuses[503] > 0
    # 403: a generated media signature, which the gateway checks without any backend; 400: the
    # edge refusing an escaped slash in a generated path, before any backend.
    assert set(run.statuses) <= {200, 400, 403, 404, 422, 503}


# Regression tests, one per bug the fuzzing found.


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

    assert spec["components"]["schemas"]["ProviderTest"]["properties"]["provider"]["pattern"] == PROVIDER_NAME.pattern
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "string_pattern_mismatch"
    assert answer.json()["detail"][0]["loc"] == ["body", "provider"]


async def test_metadata_nested_deeper_than_64_is_refused_so_that_no_stored_job_fails_to_answer(
    gateway: Gateway,
) -> None:
    client, user = gateway.client, unique_user()

    def nested(depth: int) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for _ in range(depth - 1):
            value = {"a": value}
        return value

    deep = await client.post("/api/v1/jobs", json={"userId": user, "prompt": "p", "metadata": nested(65)})
    ok = await client.post("/api/v1/jobs", json={"userId": user, "prompt": "p", "metadata": nested(64)})

    assert deep.status_code == 422 and deep.json()["detail"][0]["loc"] == ["body", "metadata"]
    assert ok.status_code == 201, ok.text
    assert (await client.get(f"/api/v1/jobs/{ok.json()['id']}")).json()["metadata"] == nested(64)
    assert (await client.get("/api/v1/jobs", params={"userId": user})).json()["total"] == 1


async def test_a_405_lists_every_method_of_the_path_in_allow(gateway: Gateway) -> None:
    for method, path, allowed in [
        ("PUT", "/api/v1/jobs", "GET, POST"),
        ("PATCH", "/api/v1/jobs/any", "DELETE, GET"),
        ("PUT", "/health", "GET"),
    ]:
        answer = await gateway.client.request(method, path)

        assert (answer.status_code, answer.headers["Allow"]) == (405, allowed)
