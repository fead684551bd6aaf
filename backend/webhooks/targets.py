"""Where a webhook may be sent: URL checks and the SSRF guard over resolved addresses.

A webhook URL is typed by an admin but fetched by our servers, so it must never reach what
only our servers can reach: loopback, private networks, link-local (cloud metadata at
169.254.169.254), multicast, reserved or unspecified addresses, nor those same addresses
dressed as IPv6 (``::ffff:127.0.0.1``, 6to4, Teredo, NAT64). The host is resolved here and
every address it resolves to is checked; the sender then connects to the checked address
itself, so a DNS answer that changes between the check and the connection cannot move it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
# NAT64's well-known prefix carries an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RefusedTarget(ValueError):
    """The URL, or an address its host resolves to, may not receive webhooks."""


@dataclass(frozen=True)
class TargetPolicy:
    """``allow_private`` lets every address through (tests, local development);
    ``allowed_networks`` lets chosen private networks through (an internal receiver)."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, allow_private: bool, networks: Sequence[str]) -> TargetPolicy:
        return cls(allow_private, tuple(ipaddress.ip_network(n, strict=False) for n in networks))


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower case, IDNA-encoded, IPv6 without brackets
    port: int

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    @property
    def is_ip_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_target(url: str) -> Target:
    """The scheme, host and port of a webhook URL, or RefusedTarget saying what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedTarget(f"is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedTarget(f"is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise RefusedTarget("must start with http:// or https://")
    if not parts.hostname:
        raise RefusedTarget("has no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedTarget("may not carry credentials (user:password@); verify signatures instead")
    if parts.fragment:
        raise RefusedTarget("may not have a #fragment")
    try:
        # One spelling everywhere (lookup, Host, SNI): the ASCII one of an international name.
        host = parts.hostname.lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise RefusedTarget(f"has a host name that is not valid: {parts.hostname!r}") from None
    return Target(scheme, host, port or DEFAULT_PORTS[scheme])


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo client, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not go to this address, or None if they may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refusal(embedded)
            return f"{reason} (as IPv6 {address})" if reason else None
    # Order matters only for the message: the most specific name first.
    for reason, matches in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    ):
        if matches:
            return f"{address} is {reason}"
    return None


def check_addresses(host: str, addresses: Sequence[str], policy: TargetPolicy) -> list[IPAddress]:
    """The addresses to connect to, if every one ``host`` resolved to is allowed.

    One refused address refuses the host: a name that resolves to a public and a private
    address is either misconfigured or a rebinding attempt.
    """
    if not addresses:
        raise RefusedTarget(f"{host} resolves to no address")
    checked: list[IPAddress] = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
        checked.append(address)
        if policy.allow_private or any(address in n for n in policy.allowed_networks):
            continue
        reason = refusal(address)
        if reason:
            raise RefusedTarget(f"{host} resolves to {reason}")
    return list(dict.fromkeys(checked))


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (blocking; the worker's way)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise LookupError(f"{host} does not resolve: {exc}") from None
    return [str(info[4][0]) for info in found]


async def resolve_async(host: str, port: int, within_seconds: float) -> list[str]:
    """Every address ``host`` resolves to (the API's way, bounded by ``within_seconds``)."""
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), within_seconds
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise LookupError(f"{host} does not resolve: {exc}") from None
    except TimeoutError:
        raise LookupError(f"{host} did not resolve within {within_seconds} s") from None
    return [str(info[4][0]) for info in found]
