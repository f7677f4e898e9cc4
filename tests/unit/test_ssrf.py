"""The webhook URL guard: HTTPS only, and no address inside a network (SSRF)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadline.ssrf import (
    UrlNotAllowed,
    UrlUnresolvable,
    address_allowed,
    check_target,
    system_resolver,
)

# Ranges no webhook may reach, with the RFCs that set them apart.
REFUSED_V4 = [
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",
    "100.64.0.0/10",  # carrier-grade NAT, shared
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local, the metadata service
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved
    "255.255.255.255/32",
]
REFUSED_V6 = [
    "::1/128",
    "::/128",
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated, still routed by some)
    "ff00::/8",  # multicast
    "2001:db8::/32",
    "100::/64",  # discard
]


def resolver_for(*addresses: str):
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@st.composite
def address_in(draw, networks: list[str]) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    network = ipaddress.ip_network(draw(st.sampled_from(networks)))
    offset = draw(st.integers(min_value=0, max_value=network.num_addresses - 1))
    return network[offset]


@given(address_in(REFUSED_V4))
def test_private_and_special_ipv4_is_refused(address):
    assert not address_allowed(address)


@given(address_in(REFUSED_V6))
def test_private_and_special_ipv6_is_refused(address):
    assert not address_allowed(address)


@given(address_in(REFUSED_V4))
def test_a_refused_ipv4_stays_refused_inside_ipv6(address):
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80))
    assert not address_allowed(mapped)
    assert not address_allowed(nat64)
    assert not address_allowed(sixtofour)


@given(st.ip_addresses(v=4))
def test_ipv4_is_allowed_exactly_when_outside_every_refused_range(address):
    inside = any(address in ipaddress.ip_network(n) for n in REFUSED_V4)
    assert address_allowed(address) is (not inside and address.is_global)
    # Mapped into IPv6 it is judged the same.
    assert address_allowed(ipaddress.IPv6Address(f"::ffff:{address}")) is address_allowed(address)


@given(st.ip_addresses(v=6))
def test_ipv6_in_a_refused_range_is_never_allowed(address):
    if any(address in ipaddress.ip_network(n) for n in REFUSED_V6):
        assert not address_allowed(address)
    if address_allowed(address):
        assert address.is_global and not address.is_multicast


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001:82b::200e"]
)
def test_public_addresses_are_allowed(address):
    assert address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:169.254.169.254]/hook",
        "https://[::ffff:a9fe:a9fe]/hook",
        "https://[fd00:ec2::254]/hook",  # the metadata service over IPv6
        "https://10.1.2.3:8443/hook",
        "https://[fe80::1]/hook",
        "https://224.0.0.1/hook",
    ],
)
def test_literal_private_hosts_are_refused_without_a_lookup(url):
    def no_lookup(host: str, port: int) -> list[str]:
        raise AssertionError("a literal address needs no lookup")

    with pytest.raises(UrlNotAllowed) as refused:
        check_target(url, resolver=no_lookup)
    assert refused.value.status == 422


@pytest.mark.parametrize(
    "resolved",
    [["10.0.0.5"], ["93.184.215.14", "127.0.0.1"], ["::ffff:192.168.1.1"], ["169.254.169.254"]],
)
def test_a_name_resolving_to_any_private_address_is_refused(resolved):
    with pytest.raises(UrlNotAllowed):
        check_target("https://crm.example.com/hooks", resolver=resolver_for(*resolved))


def test_a_name_resolving_only_to_public_addresses_is_allowed():
    resolved = check_target(
        "https://crm.example.com:8443/hooks?x=1",
        resolver=resolver_for("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"),
    )
    assert resolved == ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]


@pytest.mark.parametrize(
    "url",
    [
        "http://crm.example.com/hooks",
        "ftp://crm.example.com/hooks",
        "crm.example.com/hooks",
        "https:///hooks",
        "https://user:pass@crm.example.com/hooks",
        "https://crm.example.com:99999/hooks",
        "https://crm.example.com:0/hooks",
        "https://" + "a" * 2050 + ".com/",
    ],
)
def test_malformed_or_plain_http_urls_are_refused(url):
    with pytest.raises(UrlNotAllowed):
        check_target(url, resolver=resolver_for("93.184.215.14"))


def test_the_local_stack_may_use_http_and_loopback():
    assert check_target("http://127.0.0.1:8080/hooks", allow_private=True) == []
    # Still not any scheme at all, nor credentials.
    with pytest.raises(UrlNotAllowed):
        check_target("ftp://127.0.0.1/hooks", allow_private=True)
    with pytest.raises(UrlNotAllowed):
        check_target("http://u:p@127.0.0.1/hooks", allow_private=True)


def test_numeric_host_spellings_are_judged_by_what_they_resolve_to():
    # 2130706433 and 0x7f.1 are 127.0.0.1 to the C resolver (and so to urllib3).
    for url in ("https://2130706433/", "https://0x7f.1/", "https://localhost/"):
        with pytest.raises(UrlNotAllowed):
            check_target(url)


def test_the_system_resolver_answers_without_the_network_for_numeric_hosts():
    assert system_resolver("127.0.0.1", 443) == ["127.0.0.1"]
    assert set(system_resolver("::1", 443)) == {"::1"}


def test_an_unresolvable_host_is_refused_as_such():
    def failing(host: str, port: int) -> list[str]:
        raise UrlUnresolvable(f"the host {host!r} does not resolve")

    with pytest.raises(UrlUnresolvable):
        check_target("https://crm.example.com/", resolver=failing)
    with pytest.raises(UrlUnresolvable):
        check_target("https://crm.example.com/", resolver=resolver_for())


# ------------------------------------------------- no second resolution (rebinding)


def test_a_delivery_connects_to_the_checked_address_not_to_a_second_dns_answer(monkeypatch):
    import socket as socket_module

    import urllib3

    from threadline.http import HttpClient, TransportError
    from threadline.ssrf import system_resolver

    # A rebinding name: public for the check, loopback for whoever asks next.
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])

    def rebinding_getaddrinfo(host, port, *args, **kwargs):
        return [(socket_module.AF_INET, socket_module.SOCK_STREAM, 6, "", (next(answers), port))]

    connected: list[tuple[str, int]] = []

    def no_network(address, *args, **kwargs):
        connected.append(address)
        raise OSError("tests make no connections")

    monkeypatch.setattr(socket_module, "getaddrinfo", rebinding_getaddrinfo)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", no_network)
    url = "https://rebind.example/hooks/threadline"

    checked = check_target(url, resolver=system_resolver)
    assert checked == ["93.184.216.34"]
    with pytest.raises(TransportError):
        HttpClient().request("POST", url, body=b"{}", connect_to=checked[0])
    assert connected == [("93.184.216.34", 443)]

    # Without the pinned address urllib3 would hand the name to the resolver again.
    with pytest.raises(TransportError):
        HttpClient().request("POST", url, body=b"{}")
    assert connected[-1] == ("rebind.example", 443)


def test_a_pinned_request_names_the_host_for_tls_and_in_the_host_header(monkeypatch):
    import urllib3

    from threadline.http import HttpClient

    seen: dict[str, object] = {}

    def record(self, method, url, body=None, headers=None, **kwargs):
        seen.update(
            pool_host=self.host,
            server_hostname=self.conn_kw.get("server_hostname"),
            assert_hostname=self.assert_hostname,
            host_header=headers["Host"],
            target=url,
        )
        return urllib3.HTTPResponse(body=b"ok", status=200, preload_content=True)

    monkeypatch.setattr(urllib3.HTTPSConnectionPool, "urlopen", record)
    answer = HttpClient().request(
        "POST", "https://crm.example:8443/in?x=1", body=b"{}", connect_to="93.184.216.34"
    )
    assert answer.status == 200
    assert seen == {
        "pool_host": "93.184.216.34",
        "server_hostname": "crm.example",
        "assert_hostname": "crm.example",
        "host_header": "crm.example:8443",
        "target": "/in?x=1",
    }
