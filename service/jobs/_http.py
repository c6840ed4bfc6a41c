"""One HTTP POST to a vetted address: no second DNS lookup, no redirects, a capped body.

The connection goes to an address :func:`service.ssrf.check_url` returned, while the
request carries the URL's own host in ``Host`` and in TLS SNI (and the certificate is
checked against that name), so what was checked is what is called.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import ssl
import time

from service.ssrf import Target

__all__ = ["Response", "post", "PinnedHTTPConnection", "PinnedHTTPSConnection"]


def _open(address: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((address, port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to ``address`` that speaks to ``host``."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = _open(self.address, self.port, self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to ``address`` whose TLS name (SNI, certificate) is ``host``."""

    def __init__(self, host: str, port: int, address: str, timeout: float,
                 context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.tls = context

    def connect(self) -> None:
        sock = _open(self.address, self.port, self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@dataclasses.dataclass(frozen=True)
class Response:
    """What came back: the status, headers and at most the capped part of the body."""

    status: int
    reason: str
    headers: dict[str, str]
    """Lower-cased names; a repeated header keeps its last value."""
    body: bytes
    truncated: bool
    """True if the body was longer than the cap (or slower than the deadline)."""
    address: str
    """The address the request went to."""


def _read_capped(resp: http.client.HTTPResponse, cap: int, deadline: float) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while size < cap:
        if time.monotonic() > deadline:
            return b"".join(chunks), True
        chunk = resp.read1(min(65536, cap - size))
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    # Past the cap: say "truncated" unless the length header shows nothing is left.
    return b"".join(chunks), resp.length is None or resp.length > 0


def post(target: Target, body: bytes, headers: dict[str, str], *, timeout: float,
         max_bytes: int, context: ssl.SSLContext | None = None) -> Response:
    """POST ``body`` to the target, trying its vetted addresses in order until one connects.

    Raises ``OSError`` (refused, unreachable, timed out, TLS failure) or
    ``http.client.HTTPException`` (a response that is not HTTP).
    """
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    for address in target.addresses:
        if target.scheme == "https":
            conn = PinnedHTTPSConnection(target.host, target.port, address, timeout,
                                         context or ssl.create_default_context())
        else:
            conn = PinnedHTTPConnection(target.host, target.port, address, timeout)
        try:
            try:
                conn.connect()
            except OSError as exc:
                last_error = exc
                continue
            conn.request("POST", target.request_target, body=body, headers=headers)
            resp = conn.getresponse()
            data, truncated = _read_capped(resp, max_bytes, deadline)
            return Response(resp.status, resp.reason,
                            {k.lower(): v for k, v in resp.getheaders()}, data, truncated, address)
        finally:
            conn.close()
    raise last_error or OSError(f"{target.host} has no address to connect to")
