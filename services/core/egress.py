"""Which addresses the services may call on a client's behalf (webhook targets), and the name
resolution a caller pins its connection to, so that a name cannot resolve to one address when
checked and to another when connected to (DNS rebinding).

A public address is one the Internet routes: Python's `is_global`, without what it lets through
(multicast, site-local, NAT64 and 6to4 forms of private IPv4, the new documentation prefix) and
without the cloud metadata addresses. IPv6 forms that embed an IPv4 address are judged by it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

IPAddress = IPv4Address | IPv6Address
# A host name to its addresses (socket.gaierror when it has none); tests give their own.
Resolver = Callable[[str], Awaitable[list[IPAddress]]]
# How long a name may take to resolve before it counts as unresolvable.
RESOLVE_TIMEOUT = 2.0

# Named ranges, most specific first: the first that holds an address says why it is refused.
_REFUSED: tuple[tuple[IPv4Network | IPv6Network, str], ...] = tuple(
    (ip_network(network), reason)
    for network, reason in (
        ("169.254.169.254/32", "cloud metadata"),  # AWS, GCP, Azure, OpenStack, ...
        ("168.63.129.16/32", "cloud metadata"),  # Azure's host endpoint, a public-looking address
        ("fd00:ec2::254/128", "cloud metadata"),  # AWS over IPv6
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("169.254.0.0/16", "link-local"),
        ("192.0.0.0/24", "IETF protocol"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "benchmarking"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("2001:2::/48", "benchmarking"),
        ("64:ff9b:1::/48", "local-use NAT64"),
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")


class ForbiddenAddress(Exception):
    """A host is, or resolves to, an address that is not public."""

    def __init__(self, address: IPAddress, reason: str) -> None:
        super().__init__(f"{address} is a {reason} address")
        self.address = address
        self.reason = reason


class Unresolvable(Exception):
    """A host name has no address (or took too long to resolve)."""


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 address stands for."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refusal(address: IPAddress) -> str | None:
    """Why address may not be a webhook target (None when it is public)."""
    if isinstance(address, IPv6Address):
        address = IPv6Address(int(address))  # without a %scope
        inner = embedded_ipv4(address)
        if inner is not None:
            return refusal(inner)
    for network, reason in _REFUSED:
        if address.version == network.version and address in network:
            return reason
    if not address.is_global or address.is_reserved or address.is_multicast:
        return "non-public"
    return None


async def resolve(host: str) -> list[IPAddress]:
    """host's addresses through the event loop's getaddrinfo, in its order (socket.gaierror
    when it has none). Numeric forms such as 2130706433, 0x7f.1 and 127.1 resolve too."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in found:
            found.append(address)
    return found


def literal(host: str) -> IPAddress | None:
    """host as an address when it is one written the standard way (no lookup needed)."""
    try:
        return ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Egress:
    """Where calls on a client's behalf may go: public addresses only, unless allow_private."""

    allow_private: bool
    resolver: Resolver = resolve
    timeout: float = RESOLVE_TIMEOUT

    async def addresses(self, host: str) -> list[IPAddress]:
        """The addresses to connect to for host (itself when it is an address): Unresolvable when
        it has none, ForbiddenAddress when any of them is not public (unless allow_private)."""
        fixed = literal(host)
        if fixed is not None:
            found = [fixed]
        else:
            try:
                async with asyncio.timeout(self.timeout):
                    found = await self.resolver(host)
            except (OSError, TimeoutError, UnicodeError) as exc:
                raise Unresolvable(host) from exc
            if not found:
                raise Unresolvable(host)
        if not self.allow_private:
            for address in found:
                if (reason := refusal(address)) is not None:
                    raise ForbiddenAddress(address, reason)
        return found
