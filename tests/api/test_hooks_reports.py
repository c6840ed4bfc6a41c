"""The two routes over the service's own jobs: inbound hooks and report files."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

from standardwebhooks import Webhook

from tests.api.conftest import ACME, GLOBEX
from tests.api.test_errors import assert_problem
from tests.api.test_lifecycle import enqueue, poll

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def _signed(body: str, webhook_id: str, secret: str = SECRET) -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, now, body),
            "Content-Type": "application/json"}


def test_signed_hook_is_stored_once_and_enqueued_for_its_tenant(make_app, monkeypatch):
    monkeypatch.setenv("HOOK_SECRETS", f"shop:{SECRET}")
    monkeypatch.setenv("HOOK_TENANT", "acme")
    client = make_app().test_client()
    body = json.dumps({"type": "order.paid", "order": 42})
    webhook_id = f"msg_{uuid.uuid4().hex}"

    first = client.post("/v1/hooks/shop", data=body, headers=_signed(body, webhook_id))
    assert first.status_code == 202, first.json
    assert first.json["source"] == "shop" and first.json["webhook_id"] == webhook_id
    job = client.get(f"/v1/jobs/{first.json['job_id']}", headers=ACME)
    assert job.status_code == 200
    assert job.json["type"] == "webhook.process"
    assert job.json["payload"] == {"source": "shop", "webhook_id": webhook_id}
    assert client.get(f"/v1/jobs/{first.json['job_id']}", headers=GLOBEX).status_code == 404

    again = client.post("/v1/hooks/shop", data=body, headers=_signed(body, webhook_id))
    assert again.status_code == 200
    assert again.json["job_id"] == first.json["job_id"]
    assert len(client.get("/v1/jobs", headers=ACME).json["items"]) == 1


def test_hook_refusals_are_problems(make_app, monkeypatch):
    monkeypatch.setenv("HOOK_SECRETS", f"shop:{SECRET}")
    client = make_app().test_client()
    body = '{"n": 1}'
    wrong = "whsec_" + base64.b64encode(b"another secret of 32 bytes ....").decode()
    assert_problem(client.post("/v1/hooks/shop", data=body, headers=_signed(body, "m1", wrong)),
                   401, {})
    assert_problem(client.post("/v1/hooks/shop", data=body), 401, {})
    assert_problem(client.post("/v1/hooks/other", data=body, headers=_signed(body, "m2")),
                   404, {})
    assert client.get("/v1/jobs", headers=ACME).json["items"] == []


def test_report_file_is_the_pdf_its_job_made(api_engine, engine_client, tmp_path, monkeypatch):
    storage = tmp_path / "storage"
    monkeypatch.setenv("STORAGE_DIR", str(storage))
    api_engine.extra_env["STORAGE_DIR"] = str(storage)
    client = engine_client
    job = enqueue(client, "report.generate", {"kind": "activity", "period": "7d"})
    assert_problem(client.get(f"/v1/reports/{job['id']}/file", headers=ACME), 409,
                   {"state": ["is queued"]})
    api_engine.start_worker()
    assert poll(client, job["id"], {"succeeded", "failed"})["state"] == "succeeded"

    response = client.get(f"/v1/reports/{job['id']}/file", headers=ACME)
    assert response.status_code == 200
    assert response.content_type == "application/pdf"
    assert response.data.startswith(b"%PDF-")
    assert f"report-{job['id']}.pdf" in response.headers["Content-Disposition"]
    # another tenant's report, and a job that is not a report, are not found
    assert_problem(client.get(f"/v1/reports/{job['id']}/file", headers=GLOBEX), 404, {})
    echo = enqueue(client, "demo.echo", {"message": "x"})
    assert_problem(client.get(f"/v1/reports/{echo['id']}/file", headers=ACME), 404, {})
