"""Keyset pagination through the edge: nextCursor pages with no overlap and no gap, stable while
jobs are created between pages, and 422 naming the field for a wrong cursor."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.conftest import Gateway
from tests.support.factories import unique_user

SCRIPTED = {"provider": "scripted"}


async def create(gateway: Gateway, user: str, count: int) -> list[str]:
    """count jobs of user, oldest first."""
    ids = []
    for n in range(count):
        answer = await gateway.client.post(
            "/api/v1/jobs", json={"userId": user, "prompt": f"p{n}", "metadata": SCRIPTED}
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


async def page(gateway: Gateway, **params: Any) -> dict[str, Any]:
    answer = await gateway.client.get("/api/v1/jobs", params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def field_of_422(answer: Any) -> str:
    """The field a 422 names (the last part of its location)."""
    assert answer.status_code == 422, answer.text
    return str(answer.json()["detail"][0]["loc"][-1])


async def test_a_walk_by_next_cursor_misses_and_repeats_nothing_while_jobs_are_created(gateway: Gateway) -> None:
    user = unique_user()
    existing = await create(gateway, user, 12)

    pages = [await page(gateway, userId=user, take=5)]
    created_meanwhile: list[str] = []
    while pages[-1]["nextCursor"] is not None and len(pages) < 10:  # bounded: a cursor ignored fails, not hangs
        created_meanwhile += await create(gateway, user, 2)
        pages.append(await page(gateway, userId=user, take=5, cursor=pages[-1]["nextCursor"]))

    walked = [job["id"] for p in pages for job in p["jobs"]]
    assert walked == list(reversed(existing))
    assert not set(created_meanwhile) & set(walked)
    assert [p["total"] for p in pages] == [12, 14, 16]
    assert {(p["skip"], p["take"]) for p in pages} == {(0, 5)}


async def test_the_last_page_has_a_null_next_cursor(gateway: Gateway) -> None:
    user = unique_user()
    await create(gateway, user, 3)

    whole = await page(gateway, userId=user, take=3)

    assert (len(whole["jobs"]), whole["total"], whole["nextCursor"]) == (3, 3, None)


async def test_a_cursor_with_skip_is_422_naming_skip(gateway: Gateway) -> None:
    user = unique_user()
    await create(gateway, user, 2)
    cursor = (await page(gateway, userId=user, take=1))["nextCursor"]

    answer = await gateway.client.get("/api/v1/jobs", params={"userId": user, "cursor": cursor, "skip": 1})

    assert field_of_422(answer) == "skip"


async def test_a_cursor_of_another_list_is_422_naming_cursor(gateway: Gateway) -> None:
    user = unique_user()
    await create(gateway, user, 2)
    cursor = (await page(gateway, userId=user, take=1))["nextCursor"]

    for params in ({"userId": unique_user()}, {"userId": user, "status": "failed"}, {}):
        answer = await gateway.client.get("/api/v1/jobs", params={**params, "cursor": cursor})
        assert field_of_422(answer) == "cursor", params


@pytest.mark.parametrize("cursor", ["", "not a cursor", "x" * 129, "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"])
async def test_a_malformed_cursor_is_422_naming_cursor(gateway: Gateway, cursor: str) -> None:
    answer = await gateway.client.get("/api/v1/jobs", params={"cursor": cursor})

    assert field_of_422(answer) == "cursor"


async def test_the_openapi_document_describes_cursor_and_next_cursor(gateway: Gateway) -> None:
    document = (await gateway.client.get("/openapi.json")).json()

    parameters = {p["name"] for p in document["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    assert {"userId", "status", "skip", "take", "cursor"} <= parameters
    assert "nextCursor" in document["components"]["schemas"]["JobList"]["properties"]
