"""The rules of fairness between webhook receivers: the cap per origin, the circuit breaker, and
the origin a delivery's URL names."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.db import async_url
from services.jobs.webhooks.deliveries import ORIGIN
from services.jobs.webhooks.hosts import Admission, GateRules, HostGate

HOST = "https://hooks.example.com"
OTHER = "http://127.0.0.1:8080"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(clock: Clock | None = None, **rules: float) -> HostGate:
    defaults: dict[str, float] = {"max_per_host": 4, "failures_to_open": 5, "cooldown": 30.0}
    merged = {**defaults, **rules}
    return HostGate(
        GateRules(
            max_per_host=int(merged["max_per_host"]),
            failures_to_open=int(merged["failures_to_open"]),
            cooldown=merged["cooldown"],
        ),
        clock=clock or Clock(),
    )


def fail(hosts: HostGate, origin: str, times: int) -> None:
    for _ in range(times):
        admission = hosts.admit(origin)
        assert admission.runs
        hosts.finished(origin, admission, delivered=False)


def test_a_host_gets_at_most_its_cap_at_once_and_other_hosts_are_not_held_back() -> None:
    hosts = gate()

    admitted = [hosts.admit(HOST) for _ in range(5)]

    assert admitted == [Admission.GO] * 4 + [Admission.BUSY]
    assert hosts.blocked() == [HOST]
    assert hosts.admit(OTHER) is Admission.GO
    hosts.finished(HOST, Admission.GO, delivered=None)
    assert hosts.blocked() == []
    assert hosts.admit(HOST) is Admission.GO


def test_five_failures_in_a_row_open_the_circuit_until_the_cooldown() -> None:
    clock = Clock()
    hosts = gate(clock)

    fail(hosts, HOST, 5)

    assert hosts.admit(HOST) is Admission.OPEN
    assert hosts.blocked() == [HOST] and hosts.open_circuits() == 1
    assert hosts.admit(OTHER) is Admission.GO, "other hosts go on"
    clock.now += 29.9
    assert hosts.admit(HOST) is Admission.OPEN


def test_a_half_open_circuit_lets_one_probe_through_and_its_failure_opens_it_again() -> None:
    clock = Clock()
    hosts = gate(clock)
    fail(hosts, HOST, 5)
    clock.now += 30

    assert hosts.blocked() == [], "half-open: claimable for its probe"
    probe = hosts.admit(HOST)
    assert probe is Admission.PROBE
    assert hosts.admit(HOST) is Admission.OPEN, "one probe at a time"
    assert hosts.blocked() == [HOST]
    hosts.finished(HOST, probe, delivered=False)

    assert hosts.admit(HOST) is Admission.OPEN, "open for another cooldown"
    clock.now += 30
    assert hosts.admit(HOST) is Admission.PROBE


def test_a_probe_that_gets_through_closes_the_circuit() -> None:
    clock = Clock()
    hosts = gate(clock)
    fail(hosts, HOST, 5)
    clock.now += 30

    probe = hosts.admit(HOST)
    hosts.finished(HOST, probe, delivered=True)

    assert hosts.open_circuits() == 0
    assert [hosts.admit(HOST) for _ in range(4)] == [Admission.GO] * 4
    fail(hosts, OTHER, 4)
    assert hosts.admit(OTHER) is Admission.GO, "four failures do not open a circuit"


def test_a_delivery_between_failures_starts_the_count_again() -> None:
    hosts = gate()
    fail(hosts, HOST, 4)
    hosts.finished(HOST, hosts.admit(HOST), delivered=True)
    fail(hosts, HOST, 4)

    assert hosts.admit(HOST) is Admission.GO


def test_an_attempt_cut_short_frees_its_slot_and_moves_no_circuit() -> None:
    hosts = gate(max_per_host=1, failures_to_open=1)

    hosts.finished(HOST, hosts.admit(HOST), delivered=None)

    assert hosts.admit(HOST) is Admission.GO


def test_without_a_breaker_no_number_of_failures_opens_a_circuit() -> None:
    hosts = gate(failures_to_open=0)

    fail(hosts, HOST, 100)

    assert hosts.admit(HOST) is Admission.GO and hosts.open_circuits() == 0


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Hooks.Example.com/a/b?token=x", "https://hooks.example.com"),
        ("https://hooks.example.com:443/a", "https://hooks.example.com"),
        ("https://hooks.example.com:8443/a", "https://hooks.example.com:8443"),
        ("http://127.0.0.1:80/x", "http://127.0.0.1"),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:4480", "http://127.0.0.1:4480"),
        ("http://example.com:443/x", "http://example.com:443"),
        ("https://[::1]:8443/x", "https://[::1]:8443"),
        ("https://example.com?x=1", "https://example.com"),
        ("https://example.com#frag", "https://example.com"),
    ],
)
async def test_the_origin_of_a_url_is_its_scheme_host_and_port_without_a_default_port(
    database_url: str, url: str, origin: str
) -> None:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as connection:
            found = await connection.scalar(text(f"SELECT {ORIGIN} FROM (VALUES (:url)) AS t(url)"), {"url": url})
    finally:
        await engine.dispose()

    assert found == origin
