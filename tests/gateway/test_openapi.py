"""The OpenAPI document: readable operation ids, the API key scheme, and every status a route
can answer, the middleware's and the edge's included (the fuzz test holds answers to it)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings


def openapi(**settings: Any) -> dict[str, Any]:
    app = create_app(GatewaySettings(_env_file=None, **settings), redis_url="redis://127.0.0.1:6379/0")
    spec: dict[str, Any] = app.openapi()
    return spec


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_operation_ids_are_unique_readable_camel_case(document: dict[str, Any]) -> None:
    ids = {(method, path): op["operationId"] for path, method, op in operations(document)}

    assert len(set(ids.values())) == len(ids)
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]*)*", name) for name in ids.values()), ids
    assert ids[("post", "/api/v1/jobs")] == "createJob"
    assert ids[("get", "/api/v1/jobs/{job_id}")] == "getJob"
    assert ids[("get", "/api/v1/jobs")] == "listJobs"


def test_the_api_key_header_is_the_security_scheme_of_every_api_route(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["ApiKey"]

    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    secrets = {"secret_key": "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f-secret"}
    production = openapi(app_env="production", **secrets)
    for path, method, op in operations(document):
        required = production["paths"][path][method].get("security")
        if path.startswith("/api/"):
            assert op["security"] == [{"ApiKey": []}, {}], (method, path)  # a key, or none outside production
            assert required == [{"ApiKey": []}], (method, path)
            assert {"401", "403"} <= set(op["responses"]), (method, path)
        else:  # probes, metrics and media stay open (media URLs carry their own signature)
            assert "security" not in op and required is None, (method, path)


def test_every_route_documents_the_edges_answers_and_every_body_its_limit(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        answers = op["responses"]
        assert {"400", "429"} <= set(answers), (method, path)
        assert "Retry-After" in answers["429"]["headers"], (method, path)
        assert ("413" in answers) == ("requestBody" in op), (method, path)

    create = document["paths"]["/api/v1/jobs"]["post"]["responses"]["429"]
    assert create["content"]["application/json"]["schema"]["$ref"].endswith("/RateLimitProblem")
