"""The SSRF guard: pure functions, no network (the resolver is a parameter)."""

from __future__ import annotations

import ipaddress

import pytest

from service.ssrf import (
    AllowList,
    UnresolvableHost,
    UnsafeURL,
    check_url,
    parse_ip_host,
    refusal,
    split_url,
)


def fixed(*answers):
    """A resolver that always gives ``answers`` and counts its calls."""
    calls = []

    def resolve(host, port):
        calls.append((host, port))
        return list(answers)

    resolve.calls = calls
    return resolve


def never(host, port):
    raise AssertionError(f"{host} should not have been resolved")


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "this network"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("::ffff:127.0.0.1", "IPv4-mapped"),
    ("::ffff:169.254.169.254", "IPv4-mapped"),
    ("::ffff:8.8.8.8", "IPv4-mapped"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("64:ff9b::7f00:1", "NAT64"),
    ("64:ff9b::808:808", "NAT64"),
    ("64:ff9b:1::1", "NAT64"),
    ("2002:7f00:1::1", "6to4"),
    ("2002:808:808::1", "6to4"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("100::1", "discard"),
])
def test_non_public_addresses_are_refused_with_a_reason(address, why):
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and why in reason


def test_transition_forms_name_the_ipv4_address_they_carry():
    assert "carrying 127.0.0.1" in refusal(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert "carrying 127.0.0.1" in refusal(ipaddress.ip_address("64:ff9b::7f00:1"))
    assert "carrying 127.0.0.1" in refusal(ipaddress.ip_address("2002:7f00:1::"))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "1.1.1.1",
                                     "2606:4700:4700::1111", "2a00:1450:4001:81c::200e"])
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host, address", [
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7F.0x0.0x0.0x1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("2852039166", "169.254.169.254"),
    ("134744072", "8.8.8.8"),  # even a public address in another notation
])
def test_other_ipv4_notations_are_refused_naming_the_address(host, address):
    with pytest.raises(UnsafeURL, match=f"is {address} written in another notation"):
        parse_ip_host(host)
    with pytest.raises(UnsafeURL):
        check_url(f"http://{host}/", resolve=never)


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3.4.5", "08.1.1.1", "0x1g.1", "4294967296"])
def test_malformed_numeric_hosts_are_refused(host):
    with pytest.raises(UnsafeURL, match="not a valid|out of range"):
        parse_ip_host(host)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/",
    "http://127.0.0.1.:8080/",
    "http://[::1]:8080/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.100.100.200/",
    "https://10.0.0.1/",
    "http://[fe80::1%25eth0]/",
])
def test_literal_addresses_are_checked_without_a_lookup(url):
    with pytest.raises(UnsafeURL):
        check_url(url, resolve=never)


@pytest.mark.parametrize("url, problem", [
    ("ftp://example.com/", "only http"),
    ("file:///etc/passwd", "only http"),
    ("gopher://example.com/", "only http"),
    ("http://user:pw@example.com/", "user name or password"),
    ("http://example.com@127.0.0.1/", "user name or password"),
    ("http:///path", "no host"),
    ("http://exa mple.com/", "spaces"),
    ("http://example.com\\@127.0.0.1/", "backslashes"),
    ("http://example.com:0/", "port 0"),
    ("http://example.com:99999/", "cannot be parsed"),
    ("http://[::1/", "cannot be parsed"),
    ("http://%31%32%37.0.0.1/", "not a valid domain"),
    ("", "empty"),
    ("http://" + "a" * 2050 + ".com/", "longer than 2048"),
])
def test_malformed_or_tricky_urls_are_refused(url, problem):
    with pytest.raises(UnsafeURL, match=problem):
        check_url(url, resolve=never)


def test_loopback_names_are_refused_before_any_lookup():
    for url in ("http://localhost/", "http://LOCALHOST:9/", "http://api.localhost/"):
        with pytest.raises(UnsafeURL, match="loopback name"):
            check_url(url, resolve=never)


def test_a_name_is_resolved_once_and_every_answer_must_be_public():
    resolve = fixed("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    target = check_url("https://Example.COM/hook?x=1", resolve=resolve)
    assert resolve.calls == [("example.com", 443)]
    assert target.addresses == ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert (target.scheme, target.host, target.port, target.request_target) == (
        "https", "example.com", 443, "/hook?x=1")
    with pytest.raises(UnsafeURL, match="resolves to 10.0.0.7, a private address"):
        check_url("http://mixed.example/", resolve=fixed("93.184.216.34", "10.0.0.7"))
    with pytest.raises(UnsafeURL, match="169.254.169.254"):
        check_url("http://metadata.example/", resolve=fixed("169.254.169.254"))
    with pytest.raises(UnsafeURL, match="IPv4-mapped"):
        check_url("http://mapped.example/", resolve=fixed("::ffff:127.0.0.1"))


def test_names_that_do_not_resolve_are_a_separate_error():
    def fails(host, port):
        raise OSError("Name or service not known")

    with pytest.raises(UnresolvableHost, match="cannot resolve"):
        check_url("http://nowhere.example/", resolve=fails)
    with pytest.raises(UnresolvableHost, match="no address"):
        check_url("http://empty.example/", resolve=fixed())


def test_idn_hosts_are_sent_in_their_ascii_form():
    target = check_url("http://bücher.example/x", resolve=fixed("93.184.216.34"))
    assert target.host == "xn--bcher-kva.example"


def test_the_allow_list_admits_named_hosts_and_networks_only():
    allow = AllowList.parse("hooks.internal, 127.0.0.1, 10.20.0.0/16, [::1]")
    assert check_url("http://hooks.internal:8080/", allow=allow,
                     resolve=fixed("192.168.5.5")).addresses == ("192.168.5.5",)
    assert check_url("http://127.0.0.1:5000/", allow=allow, resolve=never).addresses == ("127.0.0.1",)
    assert check_url("http://[::1]:5000/", allow=allow, resolve=never).addresses == ("::1",)
    assert check_url("http://svc.example/", allow=allow,
                     resolve=fixed("10.20.3.4")).addresses == ("10.20.3.4",)
    with pytest.raises(UnsafeURL):  # 127.0.0.2 is loopback too, but not the allowed address
        check_url("http://127.0.0.2:5000/", allow=allow, resolve=never)
    with pytest.raises(UnsafeURL):
        check_url("http://svc.example/", allow=allow, resolve=fixed("10.21.0.1"))
    with pytest.raises(UnsafeURL):  # an allowed address in another notation is still refused
        check_url("http://2130706433:5000/", allow=allow, resolve=never)
    with pytest.raises(ValueError):
        AllowList.parse("bad host name!")


def test_without_a_resolver_names_are_left_for_the_send_and_the_rest_is_checked():
    target = check_url("https://hooks.example.com/x", resolve=None)
    assert (target.host, target.port, target.addresses) == ("hooks.example.com", 443, ())
    assert check_url("http://93.184.216.34/", resolve=None).addresses == ("93.184.216.34",)
    for url in ("http://127.0.0.1/", "http://localhost/", "http://api.localhost/",
                "http://[::ffff:10.0.0.1]/", "ftp://example.com/", "http://u:p@example.com/"):
        with pytest.raises(UnsafeURL):
            check_url(url, resolve=None)
    allow = AllowList.parse("localhost, 127.0.0.1")
    assert check_url("http://localhost:5000/", allow=allow, resolve=None).addresses == ()
    assert check_url("http://127.0.0.1:5000/", allow=allow, resolve=None).addresses == ("127.0.0.1",)


def test_split_url_defaults_ports_and_paths():
    assert split_url("http://example.com") == ("http", "example.com", 80, "/")
    assert split_url("https://example.com:8443/a/b?c=d#frag") == ("https", "example.com", 8443,
                                                                  "/a/b?c=d")
