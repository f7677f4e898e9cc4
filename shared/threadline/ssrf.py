"""Which URLs threadline may POST events to: the guard against server-side request forgery.

A subscription names a URL that threadline's worker then calls from inside the
AWS account, so a URL pointing at the instance metadata service (169.254.169.254),
a VPC-internal host or loopback would turn webhooks into a way to reach them.
Deployed, only ``https`` URLs whose host is, and resolves only to, public unicast
addresses are accepted. The check runs when a subscription is made and again
before every delivery: a name that resolved to a public address yesterday can
resolve to a private one today (DNS rebinding). The delivery then connects to the
address this check returned (``HttpClient.request(connect_to=...)``, with the host
name kept for TLS and the Host header), so no second DNS answer is ever used.

``allow_private`` (template parameter ``AllowPrivateWebhookTargets``, set only by the
local stack) lifts both rules so tests can run a receiver on 127.0.0.1 over http.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import SplitResult, urlsplit

from threadline.errors import ThreadlineError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses a connection to it could reach.
Resolver = Callable[[str, int], Iterable[str]]

MAX_URL_LENGTH = 2048
# NAT64 (RFC 6052) and 6to4 (RFC 3056) embed an IPv4 address a gateway then reaches.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
# Refused whatever the Python version's ipaddress tables say (they have changed
# between releases): IETF protocol assignments (192.0.0.0/24, of which Python
# counts a few as global), the deprecated 6to4 relay anycast, shared address space.
_ALWAYS_REFUSED = (
    ipaddress.IPv4Network("0.0.0.0/8"),
    ipaddress.IPv4Network("100.64.0.0/10"),
    ipaddress.IPv4Network("192.0.0.0/24"),
    ipaddress.IPv4Network("192.88.99.0/24"),
    ipaddress.IPv4Network("198.18.0.0/15"),
    ipaddress.IPv4Network("240.0.0.0/4"),
)


class UrlNotAllowed(ThreadlineError):
    """The URL is not one threadline will deliver events to."""

    status = 422
    code = "url_not_allowed"


class UrlUnresolvable(UrlNotAllowed):
    """The URL's host does not resolve (now)."""

    code = "url_unresolvable"


def address_allowed(address: IPAddress) -> bool:
    """True for a public unicast address; False for anything inside a network.

    Private (RFC 1918, unique-local fc00::/7), loopback, link-local (including the
    metadata service), multicast, reserved, unspecified, shared (100.64.0.0/10),
    documentation and benchmarking ranges are all refused, as is an IPv6 address that
    carries a refused IPv4 address (IPv4-mapped, NAT64, 6to4).
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_allowed(embedded)
        if address.is_site_local or address in _NAT64_LOCAL:
            return False
    elif any(address in network for network in _ALWAYS_REFUSED):
        return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (what urllib3 will try)."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UrlUnresolvable(f"the host {host!r} does not resolve") from exc
    return [str(sockaddr[0]).split("%", 1)[0] for *_, sockaddr in answers]


def parse_target(url: str, *, allow_private: bool = False) -> SplitResult:
    """The parts of ``url`` if its form is acceptable (scheme, host, no credentials)."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlNotAllowed(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlNotAllowed(f"the URL is not valid: {exc}") from exc
    allowed_schemes = {"https", "http"} if allow_private else {"https"}
    if parts.scheme.lower() not in allowed_schemes:
        raise UrlNotAllowed("webhook URLs must use https")
    if not parts.hostname:
        raise UrlNotAllowed("the URL has no host")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and in the subscription list.
        raise UrlNotAllowed("the URL must not carry a user name or password")
    if port == 0:
        raise UrlNotAllowed("the URL's port is not valid")
    return parts


def check_target(
    url: str, *, allow_private: bool = False, resolver: Resolver = system_resolver
) -> list[str]:
    """Raise :class:`UrlNotAllowed` unless events may be POSTed to ``url``.

    Returns the addresses the host resolved to. Every one of them must be allowed:
    a name with one public and one private address is refused, since the
    connection could go to either.
    """
    parts = parse_target(url, allow_private=allow_private)
    host = str(parts.hostname)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    if allow_private:
        return []
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    texts = [str(literal)] if literal is not None else list(resolver(host, port))
    if not texts:
        raise UrlUnresolvable(f"the host {host!r} does not resolve")
    for text in texts:
        try:
            address = ipaddress.ip_address(text)
        except ValueError as exc:
            raise UrlNotAllowed(f"the host {host!r} resolves to {text!r}") from exc
        if not address_allowed(address):
            raise UrlNotAllowed(
                f"the host {host!r} is or resolves to a private, loopback, link-local, "
                "multicast or reserved address"
            )
    return texts
