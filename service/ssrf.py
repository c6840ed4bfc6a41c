"""Decide whether a webhook URL may be called, and at which vetted address.

Outbound webhooks go to URLs that customers type in, so a URL must never reach the
service's own network: loopback, private ranges, link-local (cloud metadata at
169.254.169.254), carrier-grade NAT, multicast, reserved blocks, IPv6 transition
forms that smuggle an IPv4 address (``::ffff:127.0.0.1``, NAT64, 6to4, Teredo) and
IPv4 written in other notations (``2130706433``, ``0x7f.1``, ``127.1``).

:func:`check_url` resolves the host once and returns a :class:`Target` holding the
addresses it checked; the caller connects to one of those addresses and never
resolves the name again, so a DNS answer that changes between the check and the
connection (DNS rebinding) cannot redirect the request. Everything here is a pure
function of its arguments; the resolver is a parameter.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
from typing import Callable, Iterable
from urllib.parse import urlsplit

__all__ = [
    "UnsafeURL",
    "UnresolvableHost",
    "AllowList",
    "Target",
    "Resolver",
    "check_url",
    "split_url",
    "parse_ip_host",
    "refusal",
    "system_resolve",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""``resolve(host, port) -> [address, ...]``; raises ``OSError`` when the name has none."""


class UnsafeURL(ValueError):
    """The URL may not be called: bad form, a refused address, or a refused name."""


class UnresolvableHost(Exception):
    """The host name has no address right now (a DNS failure, perhaps temporary)."""


_V4_BLOCKS = [(ipaddress.ip_network(net), why) for net, why in [
    ("0.0.0.0/8", "in 0.0.0.0/8 ('this network')"),
    ("10.0.0.0/8", "a private address (10.0.0.0/8)"),
    ("100.64.0.0/10", "a carrier-grade NAT address (100.64.0.0/10)"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (169.254.0.0/16, where cloud metadata lives)"),
    ("172.16.0.0/12", "a private address (172.16.0.0/12)"),
    ("192.0.0.0/24", "an IETF protocol address (192.0.0.0/24)"),
    ("192.0.2.0/24", "a documentation address (192.0.2.0/24)"),
    ("192.88.99.0/24", "a 6to4 relay address (192.88.99.0/24)"),
    ("192.168.0.0/16", "a private address (192.168.0.0/16)"),
    ("198.18.0.0/15", "a benchmarking address (198.18.0.0/15)"),
    ("198.51.100.0/24", "a documentation address (198.51.100.0/24)"),
    ("203.0.113.0/24", "a documentation address (203.0.113.0/24)"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address (240.0.0.0/4)"),
]]

_V6_BLOCKS = [(ipaddress.ip_network(net), why) for net, why in [
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("::ffff:0:0/96", "an IPv4-mapped IPv6 address"),
    ("::ffff:0:0:0/96", "an IPv4-translated IPv6 address"),
    ("::/96", "an IPv4-compatible IPv6 address (deprecated)"),
    ("64:ff9b::/96", "a NAT64 address (64:ff9b::/96)"),
    ("64:ff9b:1::/48", "a local-use NAT64 address (64:ff9b:1::/48)"),
    ("100::/64", "a discard-only address (100::/64)"),
    ("2001::/32", "a Teredo address (2001::/32)"),
    ("2001:db8::/32", "a documentation address (2001:db8::/32)"),
    ("2001:10::/28", "an ORCHID address (2001:10::/28)"),
    ("2002::/16", "a 6to4 address (2002::/16)"),
    ("3fff::/20", "a documentation address (3fff::/20)"),
    ("fc00::/7", "a unique-local (private) IPv6 address"),
    ("fe80::/10", "a link-local IPv6 address"),
    ("fec0::/10", "a site-local IPv6 address"),
    ("ff00::/8", "a multicast address"),
]]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a transition form carries, for the error message."""
    if int(ip) <= 1:
        return None  # :: and ::1 carry nothing
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    value = int(ip)
    if ip in ipaddress.ip_network("64:ff9b::/96") or ip in ipaddress.ip_network("::/96") \
            or ip in ipaddress.ip_network("::ffff:0:0:0/96"):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why a webhook may not be sent to ``ip``, or ``None`` if it is a public address."""
    blocks = _V4_BLOCKS if ip.version == 4 else _V6_BLOCKS
    for network, why in blocks:
        if ip in network:
            embedded = _embedded_ipv4(ip) if ip.version == 6 else None
            return f"{why}, carrying {embedded}" if embedded is not None else why
    # The tables above are explicit so the answer does not change with the Python
    # version; these checks are the safety net for blocks the tables miss.
    for flag, why in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local address"),
                      ("is_multicast", "a multicast address"), ("is_unspecified", "the unspecified address"),
                      ("is_reserved", "a reserved address"), ("is_private", "a private address")):
        if getattr(ip, flag):
            return why
    if not ip.is_global:
        return "not a public address"
    return None


_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_LEGACY_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address:
    """Parse the inet_aton forms (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_LEGACY_PART.fullmatch(p) for p in parts):
        raise UnsafeURL(f"host {host!r} looks like an IPv4 address but is not a valid one")
    numbers = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif part.startswith("0") and len(part) > 1:
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(parts)):
        raise UnsafeURL(f"host {host!r} looks like an IPv4 address but is out of range")
    value = last
    for i, n in enumerate(leading):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def parse_ip_host(host: str) -> IPAddress | None:
    """The address a URL host denotes if it is an IP literal, else ``None`` (a name).

    IPv4 in any notation but plain dotted decimal is refused outright: resolvers and
    URL parsers disagree about those forms, and a real endpoint never needs them.
    """
    if ":" in host:
        if "%" in host:
            raise UnsafeURL(f"host {host!r} has an IPv6 zone id; those are never public")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise UnsafeURL(f"host {host!r} is not a valid IPv6 address") from None
    bare = host[:-1] if host.endswith(".") else host
    last = bare.rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL.fullmatch(last):
        return None
    ip = _legacy_ipv4(bare)
    if str(ip) != bare:
        raise UnsafeURL(f"host {host!r} is {ip} written in another notation; "
                        "give IPv4 addresses in plain dotted decimal")
    return ip


@dataclasses.dataclass(frozen=True)
class AllowList:
    """Hosts an operator lets webhooks reach even though they are not public."""

    names: frozenset[str] = frozenset()
    """Host names (or literal addresses, as written in a URL) allowed whatever they resolve to."""
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Addresses allowed whatever name led to them (``10.1.2.3``, ``10.0.0.0/8``)."""

    @classmethod
    def parse(cls, text: str | Iterable[str] | None) -> "AllowList":
        """From ``"hooks.internal, 127.0.0.1, 10.0.0.0/8"``; raises ``ValueError``."""
        items = text.split(",") if isinstance(text, str) else list(text or [])
        names, networks = set(), []
        for raw in items:
            item = raw.strip().lower()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = item.rstrip(".")
            if not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?", name):
                raise ValueError(f"{raw.strip()!r} is neither a host name nor an address/network")
            names.add(name)
        return cls(frozenset(names), tuple(networks))

    def allows_name(self, host: str) -> bool:
        return host.rstrip(".") in self.names

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)


@dataclasses.dataclass(frozen=True)
class Target:
    """A vetted URL: where to connect (``addresses``) and what to ask for."""

    url: str
    scheme: str
    host: str
    """The host as sent in ``Host`` and TLS SNI (IDNA-encoded, lower case)."""
    port: int
    request_target: str
    """Path and query, e.g. ``/hooks?x=1``."""
    addresses: tuple[str, ...]
    """The checked addresses; connect only to these."""


_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


def split_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, request_target)`` of an http(s) URL; ``UnsafeURL`` otherwise."""
    if not isinstance(url, str) or not url:
        raise UnsafeURL("the URL is empty")
    if len(url) > 2048:
        raise UnsafeURL("the URL is longer than 2048 characters")
    if _BAD_URL_CHARS.search(url):
        raise UnsafeURL("the URL contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"the URL cannot be parsed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL("only http:// and https:// URLs can receive webhooks")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURL("the URL may not carry a user name or password")
    host = parts.hostname or ""
    if not host:
        raise UnsafeURL("the URL has no host")
    if ":" not in host:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise UnsafeURL(f"host {parts.hostname!r} is not a valid domain name") from None
        if not re.fullmatch(r"[a-z0-9_.-]{1,253}", host) or ".." in host or host.startswith("."):
            raise UnsafeURL(f"host {parts.hostname!r} is not a valid domain name")
    if port == 0:
        raise UnsafeURL("port 0 cannot be called")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, host, port or (443 if scheme == "https" else 80), target


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host``, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


def check_url(url: str, *, allow: AllowList = AllowList(),
              resolve: Resolver | None = system_resolve) -> Target:
    """Vet ``url`` for a webhook: resolve its host once and check every address.

    Raises ``UnsafeURL`` (never worth retrying) or ``UnresolvableHost`` (the name has
    no address now). Every address the name resolves to must pass, so an answer that
    mixes a public and a private address is refused.

    With ``resolve=None`` no resolver is asked: a malformed URL, a scheme other than
    http(s), credentials, a literal address that is not public and a ``localhost`` name
    are refused all the same, but a name is left unchecked (the ``Target`` holds no
    address) for a call with a resolver at send time.
    """
    scheme, host, port, request_target = split_url(url)
    literal = parse_ip_host(host)
    if literal is not None:
        if not (allow.allows_name(host) or allow.allows_address(literal)):
            why = refusal(literal)
            if why:
                raise UnsafeURL(f"{literal} is {why}; webhooks go to public addresses only")
        return Target(url, scheme, host, port, request_target, (str(literal),))

    named = allow.allows_name(host)
    if not named and (host == "localhost" or host.endswith((".localhost", ".localhost."))):
        raise UnsafeURL(f"{host} is a loopback name; webhooks go to public addresses only")
    if resolve is None:
        return Target(url, scheme, host, port, request_target, ())
    try:
        answers = list(resolve(host, port))
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHost(f"cannot resolve {host}: {exc}") from exc
    if not answers:
        raise UnresolvableHost(f"{host} has no address")
    addresses = []
    for answer in answers:
        try:
            ip = ipaddress.ip_address(str(answer).split("%", 1)[0])
        except ValueError:
            raise UnsafeURL(f"{host} resolved to {answer!r}, which is not an address") from None
        if not (named or allow.allows_address(ip)):
            why = refusal(ip)
            if why:
                raise UnsafeURL(f"{host} resolves to {ip}, {why}; webhooks go to public "
                                "addresses only")
        addresses.append(str(ip))
    return Target(url, scheme, host, port, request_target, tuple(addresses))
