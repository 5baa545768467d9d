"""Egress: which addresses a webhook may target, and names resolved before they are judged."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import ip_address

import pytest

from services.core import egress
from services.core.egress import Egress, ForbiddenAddress, IPAddress, Unresolvable

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.5", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("168.63.129.16", "cloud metadata"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%2", "link-local"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fec0::1", "site-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("2001:2::1", "benchmarking"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "IETF protocol"),
    ("64:ff9b:1::a00:5", "local-use NAT64"),
    ("2001::1", "non-public"),  # Teredo
    ("::127.0.0.1", "non-public"),  # IPv4-compatible, deprecated
    ("5f00::1", "non-public"),
    ("100::1", "non-public"),  # discard-only
]
# IPv6 forms that embed an IPv4 address are refused for what they embed.
EMBEDDED = [
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.5", "private"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ("64:ff9b::c0a8:101", "private"),
    ("2002:7f00:1::1", "loopback"),
    ("2002:a00:5::", "private"),
    ("2002:6440:1::", "shared (CGNAT)"),
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "172.32.0.1",
    "100.128.0.1",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "reason"), REFUSED + EMBEDDED)
def test_addresses_that_are_not_public_are_refused_with_the_reason(address: str, reason: str) -> None:
    assert egress.refusal(ip_address(address)) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_may_be_targets(address: str) -> None:
    assert egress.refusal(ip_address(address)) is None


def resolver_of(answers: dict[str, list[str]]) -> egress.Resolver:
    """A resolver that knows only these names."""

    async def resolve(host: str) -> list[IPAddress]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ip_address(a) for a in answers[host]]

    return resolve


async def test_a_name_is_refused_when_any_of_its_addresses_is_not_public() -> None:
    rules = Egress(allow_private=False, resolver=resolver_of({"mixed.test": ["8.8.8.8", "10.0.0.5"]}))

    with pytest.raises(ForbiddenAddress) as refused:
        await rules.addresses("mixed.test")

    assert (str(refused.value.address), refused.value.reason) == ("10.0.0.5", "private")


async def test_a_public_name_answers_its_addresses_in_order() -> None:
    rules = Egress(allow_private=False, resolver=resolver_of({"public.test": ["8.8.4.4", "2001:4860:4860::8844"]}))

    assert [str(a) for a in await rules.addresses("public.test")] == ["8.8.4.4", "2001:4860:4860::8844"]


async def test_an_address_needs_no_resolution() -> None:
    rules = Egress(allow_private=False, resolver=resolver_of({}))

    assert [str(a) for a in await rules.addresses("8.8.8.8")] == ["8.8.8.8"]
    with pytest.raises(ForbiddenAddress):
        await rules.addresses("[::1]")


async def test_a_name_that_does_not_resolve_or_resolves_too_slowly_is_unresolvable() -> None:
    async def slow(host: str) -> list[IPAddress]:
        await asyncio.sleep(5)
        return [ip_address("8.8.8.8")]

    with pytest.raises(Unresolvable):
        await Egress(allow_private=False, resolver=resolver_of({})).addresses("nowhere.test")
    with pytest.raises(Unresolvable):
        await Egress(allow_private=True, resolver=slow, timeout=0.05).addresses("slow.test")


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f.1", "127.1", "017700000001"])
async def test_loopback_in_disguise_resolves_to_loopback_and_is_refused(host: str) -> None:
    with pytest.raises(ForbiddenAddress) as refused:
        await Egress(allow_private=False).addresses(host)

    assert refused.value.reason == "loopback"


async def test_private_targets_pass_when_allowed_and_are_still_resolved() -> None:
    rules = Egress(allow_private=True, resolver=resolver_of({"intranet.test": ["10.0.0.5"]}))

    assert [str(a) for a in await rules.addresses("intranet.test")] == ["10.0.0.5"]
    assert [str(a) for a in await rules.addresses("127.0.0.1")] == ["127.0.0.1"]
