"""Real peers on loopback for the job tests: an SMTP server (aiosmtpd) and HTTP receivers."""

from __future__ import annotations

import collections
import dataclasses
import http.server
import ssl
import threading
import time
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from service.embedded_redis import free_port

USER, PASSWORD = "mailer", "s3cret pass"


class MailHandler:
    """Accepts mail, except for scripted recipients.

    ``greylist-*@...`` answers 421 the first time each address is tried, then accepts;
    ``reject-*@...`` always answers 550.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.messages: list[dict] = []
        self.rcpt_tries: collections.Counter = collections.Counter()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        with self.lock:
            self.rcpt_tries[address] += 1
            tries = self.rcpt_tries[address]
        if local.startswith("greylist-") and tries == 1:
            return "421 4.7.0 greylisted, try again later"
        if local.startswith("reject-"):
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append({
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "message": parsed,
                "raw": envelope.content,
                "login": session.auth_data if session.authenticated else None,
                "tls": session.ssl is not None  # after STARTTLS
                       or server.transport.get_extra_info("ssl_object") is not None,
            })
        return "250 2.0.0 accepted"

    def find(self, message_id: str) -> list[dict]:
        with self.lock:
            return [m for m in self.messages if m["message"]["Message-ID"] == message_id]


def _authenticate(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER
          and auth_data.password.decode() == PASSWORD)
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1: STARTTLS (``implicit_tls=False``) or SMTPS."""

    def __init__(self, server_tls, implicit_tls: bool = False):
        self.handler = MailHandler()
        self.port = free_port()
        kwargs = dict(authenticator=_authenticate, auth_require_tls=not implicit_tls)
        if implicit_tls:
            kwargs["ssl_context"] = server_tls
        else:
            kwargs.update(tls_context=server_tls, require_starttls=True)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname="localhost", **kwargs)

    def url(self, user: str = USER, password: str = PASSWORD) -> str:
        from urllib.parse import quote

        if self.controller.ssl_context is not None:
            return f"smtps://{quote(user)}:{quote(password)}@127.0.0.1:{self.port}"
        return f"smtp://{quote(user)}:{quote(password)}@127.0.0.1:{self.port}?starttls=1"

    def start(self) -> "SmtpServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


@dataclasses.dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int = 200
    headers: dict = dataclasses.field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    """Seconds the receiver waits before answering (a slow endpoint)."""


@dataclasses.dataclass
class Hit:
    method: str
    path: str
    headers: dict
    body: bytes
    at: float


class Receiver:
    """A threaded HTTP server on ``host`` that records every request and answers per script."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None):
        self.host = host
        self.scheme = "https" if tls else "http"
        self.lock = threading.Lock()
        self.hits: list[Hit] = []
        self.server_names: list[str | None] = []
        """The TLS SNI names clients asked for."""
        self.scripts: dict[str, list[Reply]] = {}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with receiver.lock:
                    receiver.hits.append(Hit(self.command, path, {k.lower(): v for k, v in
                                                                  self.headers.items()},
                                             body, time.time()))
                    script = receiver.scripts.get(path) or [Reply()]
                    reply = script.pop(0) if len(script) > 1 else script[0]
                if reply.delay:
                    time.sleep(reply.delay)  # the peer is slow on purpose
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                try:
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_POST = do_GET = do_PUT = _handle

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "Receiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> str:
        """Answer requests to ``path`` with ``replies`` in order (the last one repeats)."""
        with self.lock:
            self.scripts[path] = list(replies)
        return path

    def requests(self, path: str | None = None) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if path is None or h.path == path]
