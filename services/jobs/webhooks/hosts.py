"""Fairness between webhook receivers: a cap of attempts in flight per origin, and a circuit
breaker per origin, so that a receiver that never answers cannot hold every slot of the sender.

An origin is the scheme, host and port of a delivery's URL, lower-cased, without a default port
(80 for http, 443 for https): `https://hooks.example.com`, `http://127.0.0.1:8080`. The claim's SQL
computes it (deliveries.ORIGIN), so the origins the claim leaves out are the very strings held here.

The counts and circuits live in the process: with N jobs replicas a host gets at most
N x WEBHOOK_MAX_PER_HOST attempts at once, and each replica's breaker opens on its own failures.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass


class Admission(enum.Enum):
    """What the gate says to one claimed delivery."""

    # Attempt it now.
    GO = "go"
    # Attempt it now: the one probe of a half-open circuit.
    PROBE = "probe"
    # Not now, and not counted as an attempt: its host has WEBHOOK_MAX_PER_HOST in flight.
    BUSY = "host_busy"
    # Not now, and not counted as an attempt: its host's circuit is open.
    OPEN = "circuit_open"

    @property
    def runs(self) -> bool:
        """Whether the delivery is attempted now."""
        return self in (Admission.GO, Admission.PROBE)


@dataclass
class Circuit:
    """The breaker of one origin."""

    # Failed attempts in a row.
    failures: int = 0
    # While open: when (monotonic) a probe may go; None while closed.
    open_until: float | None = None
    # Whether the probe of the half-open circuit is in flight.
    probing: bool = False


@dataclass(frozen=True)
class GateRules:
    """The WEBHOOK_MAX_PER_HOST and WEBHOOK_CIRCUIT_* settings."""

    max_per_host: int = 4
    # Failed attempts in a row that open a host's circuit (0: no breaker).
    failures_to_open: int = 5
    # Seconds an open circuit stays open before one probe goes through.
    cooldown: float = 30.0


class HostGate:
    """Counts attempts in flight per origin and keeps each origin's circuit."""

    def __init__(self, rules: GateRules, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rules = rules
        self._clock = clock
        self._in_flight: dict[str, int] = {}
        self._circuits: dict[str, Circuit] = {}

    def blocked(self) -> list[str]:
        """The origins not to claim now: at their cap, open, or half-open with the probe out."""
        busy = {origin for origin, count in self._in_flight.items() if count >= self._rules.max_per_host}
        return sorted(busy.union(self.open_origins()))

    def open_origins(self) -> list[str]:
        """The origins whose circuit is open now (or half-open with the probe out)."""
        return sorted(origin for origin in self._circuits if self._refusal(origin) is Admission.OPEN)

    def admit(self, origin: str) -> Admission:
        """Whether a delivery to origin may be attempted now; a yes takes one of its slots."""
        circuit = self._refusal(origin)
        if circuit is Admission.OPEN:
            return circuit
        if self._in_flight.get(origin, 0) >= self._rules.max_per_host:
            return Admission.BUSY
        self._in_flight[origin] = self._in_flight.get(origin, 0) + 1
        if circuit is Admission.PROBE:
            self._circuits[origin].probing = True
            return circuit
        return Admission.GO

    def finished(self, origin: str, admission: Admission, *, delivered: bool | None) -> None:
        """Frees the slot of an admitted attempt; its outcome (None: cut short, no outcome) moves the
        origin's circuit."""
        left = self._in_flight.get(origin, 1) - 1
        if left > 0:
            self._in_flight[origin] = left
        else:
            self._in_flight.pop(origin, None)
        circuit = self._circuits.get(origin)
        if admission is Admission.PROBE and circuit is not None:
            circuit.probing = False
        if delivered is None or not self._rules.failures_to_open:
            return
        if delivered:
            self._circuits.pop(origin, None)
            return
        self._failed(origin, probe=admission is Admission.PROBE)

    def open_circuits(self) -> int:
        """How many origins' circuits are open or half-open."""
        return sum(1 for circuit in self._circuits.values() if circuit.open_until is not None)

    def _failed(self, origin: str, *, probe: bool) -> None:
        circuit = self._circuits.setdefault(origin, Circuit())
        circuit.failures += 1
        opens = circuit.open_until is None and circuit.failures >= self._rules.failures_to_open
        if probe or opens:
            circuit.open_until = self._clock() + self._rules.cooldown

    def _refusal(self, origin: str) -> Admission | None:
        """OPEN while the origin's circuit is open (or its probe is out), PROBE once it is half-open,
        None while it is closed."""
        circuit = self._circuits.get(origin)
        if circuit is None or circuit.open_until is None:
            return None
        if circuit.probing or self._clock() < circuit.open_until:
            return Admission.OPEN
        return Admission.PROBE
