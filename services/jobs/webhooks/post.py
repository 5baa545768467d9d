"""One webhook POST, to the very address that was just checked, its failure told in coarse words.

Each attempt resolves the URL's host and checks every address (services/core/egress.py), then
connects to one of those addresses by number, sending the host's name as Host and as the TLS
server name, so the certificate is still checked against the name. A name that resolved to a
public address when the job was created and resolves to 127.0.0.1 now is never connected to.
A failure is recorded as one of FAILURES or `status <code>`, never an exception's text, which
could tell a client about internal hosts and ports (deliveries would be a port scanner).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from services.core.egress import Egress, ForbiddenAddress, Unresolvable

TIMEOUT = "timeout"
REFUSED = "refused"
TLS = "tls"
DNS = "dns"
FORBIDDEN = "forbidden address"
CONNECTION = "connection error"
FAILURES = (TIMEOUT, REFUSED, TLS, DNS, FORBIDDEN, CONNECTION)
# Addresses of one name tried in turn when connecting fails (as a browser does).
MAX_ADDRESSES = 4


@dataclass(frozen=True)
class Attempt:
    """What came of a POST: the receiver's status, or why there was none."""

    status: int | None
    failure: str | None = None

    @property
    def delivered(self) -> bool:
        """Whether the receiver took it (2xx)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def error(self) -> str | None:
        """The delivery's lastError for this attempt: None when delivered."""
        if self.delivered:
            return None
        return self.failure or f"status {self.status}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """exc and what caused it, through chained exceptions and exception groups."""
    pending, seen = [exc], set[int]()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)


def failure_of(exc: BaseException) -> str:
    """The coarse category of a failed connection or exchange."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return TIMEOUT
    causes = list(_causes(exc))
    if any(isinstance(cause, ssl.SSLError | ssl.CertificateError) for cause in causes):
        return TLS
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return REFUSED
    return CONNECTION


class WebhookPoster:
    """POSTs webhooks through its own connections, one per attempt."""

    def __init__(
        self, egress: Egress, *, timeout: float, max_connections: int, verify: ssl.SSLContext | bool = True
    ) -> None:
        self._egress = egress
        self._timeout = timeout
        # No keep-alive: every attempt connects to the address it has just checked, and a pooled
        # TLS connection (keyed by address) could carry a request for a name it never verified.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
            verify=verify,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=0),
        )

    async def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> Attempt:
        """One attempt, within the timeout, connection and name resolution included."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._post(httpx.URL(url), body, headers)
        except TimeoutError:
            return Attempt(None, TIMEOUT)

    async def _post(self, url: httpx.URL, body: bytes, headers: dict[str, str]) -> Attempt:
        host = url.raw_host.decode("ascii")  # IDNA-encoded, as in the Host header
        try:
            addresses = await self._egress.addresses(host)
        except ForbiddenAddress:
            return Attempt(None, FORBIDDEN)
        except Unresolvable:
            return Attempt(None, DNS)
        named = {**headers, "host": url.netloc.decode("ascii")}
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        failure = CONNECTION
        for address in addresses[:MAX_ADDRESSES]:
            target = url.copy_with(host=str(address))
            try:
                async with self._client.stream(
                    "POST", target, content=body, headers=named, extensions=extensions
                ) as response:
                    return Attempt(response.status_code)
            except httpx.ConnectError as exc:
                failure = failure_of(exc)  # another address of the name may answer
            except Exception as exc:
                return Attempt(None, failure_of(exc))
        return Attempt(None, failure)

    async def aclose(self) -> None:
        """Closes the connections."""
        await self._client.aclose()
