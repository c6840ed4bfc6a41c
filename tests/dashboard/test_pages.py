"""Every page renders; tenants see only their own; read-only keys see no action and
their POSTs are refused; hostile input in the filters is never a 500."""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import ACME_KEY, GLOBEX_KEY
from tests.dashboard.conftest import OPERATOR_KEY, OPERATOR_READ_KEY, READ_KEY, csrf


@pytest.fixture
def jobs(adapter):
    """A job of acme's and one of globex's, a failed job of acme's, a schedule, a workflow."""
    acme = adapter.enqueue("demo.echo", {"message": "acme's"}, tenant="acme")
    globex = adapter.enqueue("demo.echo", {"message": "globex's"}, tenant="globex")
    adapter.cancel(acme.id)  # an ended job: its page shows the retry button
    adapter.schedules().create("acme", "nightly", "demo.echo", {"message": "tick"}, every=3600)
    flow = adapter.enqueue_workflow("chain", [("demo.echo", {"message": "one"}, None),
                                              ("demo.echo", {"message": "two"}, None)],
                                    tenant="acme")
    return {"acme": acme, "globex": globex, "workflow": flow}


PAGES = ["/", "/?state=failed", "/ui/failures", "/ui/schedules", "/ui/workflows"]
OPERATOR_PAGES = ["/ui/queues", "/ui/workers", "/ui/audit", "/ui/charts", "/ui/api/minutes",
                  "/ui/api/counts"]


@pytest.mark.parametrize("key", [ACME_KEY, READ_KEY, OPERATOR_KEY, OPERATOR_READ_KEY])
def test_every_page_renders(as_key, jobs, key):
    client = as_key(key)
    operator = key in (OPERATOR_KEY, OPERATOR_READ_KEY)
    pages = PAGES + [f"/ui/jobs/{jobs['acme'].id}", f"/ui/api/jobs/{jobs['acme'].id}",
                     f"/ui/workflows/{jobs['workflow'].id}",
                     f"/ui/jobs/{jobs['acme'].id}/retry", "/ui/schedules/acme/nightly/run"]
    for page in pages + (OPERATOR_PAGES if operator else []):
        response = client.get(page)
        assert response.status_code == 200, (page, response.get_data(as_text=True)[:800])
    if not operator:
        for page in OPERATOR_PAGES[:4]:
            assert client.get(page).status_code == 403, page


def test_a_tenant_sees_only_its_own_jobs(as_key, jobs):
    acme, globex = as_key(ACME_KEY), as_key(GLOBEX_KEY)
    mine, theirs = jobs["acme"].id, jobs["globex"].id
    listing = acme.get("/").get_data(as_text=True)
    assert mine in listing and theirs not in listing
    unknown = acme.get("/ui/jobs/no-such-job")
    other = acme.get(f"/ui/jobs/{theirs}")
    assert other.status_code == unknown.status_code == 404
    assert other.get_data(as_text=True) == unknown.get_data(as_text=True)
    for path in (f"/ui/api/jobs/{theirs}", f"/ui/jobs/{theirs}/retry"):
        assert acme.get(path).status_code == 404, path
    assert globex.get(f"/ui/workflows/{jobs['workflow'].id}").status_code == 404
    assert globex.get("/ui/schedules/acme/nightly/run").status_code == 404
    assert "nightly" not in globex.get("/ui/schedules").get_data(as_text=True)
    # the tenant filter of a tenant's key is its own, whatever the query says
    assert theirs not in acme.get("/?tenant=globex").get_data(as_text=True)
    # finding another tenant's job by id finds nothing
    found = acme.get(f"/?q={theirs}")
    assert found.status_code == 200 and "No job" in found.get_data(as_text=True)
    # a POST on another tenant's job is a 404 too, and changes nothing
    token = csrf(acme.get(f"/ui/jobs/{mine}/retry"))
    assert acme.post(f"/ui/jobs/{theirs}/cancel", data={"csrf_token": token}).status_code == 404


def test_an_operator_sees_every_tenant(as_key, jobs, adapter):
    client = as_key(OPERATOR_KEY)
    for tenant in ("acme", "globex"):
        body = client.get(f"/?tenant={tenant}").get_data(as_text=True)
        assert jobs[tenant].id in body
    assert client.get(f"/ui/jobs/{jobs['globex'].id}").status_code == 200
    assert "nightly" in client.get("/ui/schedules").get_data(as_text=True)
    by_key = adapter.enqueue("demo.echo", {"message": "k"}, tenant="globex")
    assert client.get(f"/?q={by_key.id}").headers["Location"] == f"/ui/jobs/{by_key.id}"


def test_find_by_idempotency_key(as_key, adapter):
    from adapters import JobOptions

    job = adapter.enqueue("demo.echo", {"message": "k"}, JobOptions(idempotency_key="order-42"),
                          tenant="acme")
    assert as_key(ACME_KEY).get("/?q=order-42").headers["Location"] == f"/ui/jobs/{job.id}"
    assert as_key(OPERATOR_KEY).get("/?q=acme/order-42").headers["Location"] == \
        f"/ui/jobs/{job.id}"
    assert as_key(GLOBEX_KEY).get("/?q=order-42").status_code == 200  # not globex's: not found


@pytest.mark.parametrize("key", [READ_KEY, OPERATOR_READ_KEY])
def test_a_read_only_key_has_no_buttons_and_its_posts_are_403(as_key, jobs, adapter, key):
    client = as_key(key)
    acme = jobs["acme"].id
    pages = [f"/ui/jobs/{acme}", "/", "/ui/schedules", f"/ui/jobs/{acme}/retry"]
    if key == OPERATOR_READ_KEY:
        pages.append("/ui/queues")
    for page in pages:
        body = client.get(page).get_data(as_text=True)
        assert not re.search(r"Retry…|Cancel…|Run now…|Pause…|Resume…|Delete…", body), page
        assert 'id="confirm"' not in body
    token = csrf(client.get("/"))  # the sign-out form's
    for path in (f"/ui/jobs/{acme}/retry", "/ui/schedules/acme/nightly/run",
                 "/ui/schedules/acme/nightly/pause", "/ui/queues/default/pause"):
        assert client.post(path, data={"csrf_token": token}).status_code == 403, path
    assert adapter.schedules().get("acme", "nightly").enabled
    assert len(adapter.list(tenant="acme")[0]) == 3
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302


def test_retry_and_cancel_from_the_job_page(as_key, jobs, adapter):
    client = as_key(ACME_KEY)
    acme = jobs["acme"].id
    page = client.get(f"/ui/jobs/{acme}").get_data(as_text=True)
    assert "Retry…" in page and "Cancel…" not in page
    confirm = client.get(f"/ui/jobs/{acme}/retry")
    assert 'id="confirm"' in confirm.get_data(as_text=True)
    response = client.post(f"/ui/jobs/{acme}/retry", data={"csrf_token": csrf(confirm)})
    new_id = response.headers["Location"].rsplit("/", 1)[1]
    assert adapter.get(new_id).retry_of == acme
    # the job it replays names its retries, and its page links them
    second = adapter.retry(acme, tenant="acme")
    assert adapter.get(acme).retried_as == (new_id, second.id)
    page = client.get(f"/ui/jobs/{acme}").get_data(as_text=True)
    assert f'href="/ui/jobs/{new_id}"' in page and f'href="/ui/jobs/{second.id}"' in page
    again = client.post(f"/ui/jobs/{acme}/cancel", data={"csrf_token": csrf(confirm)},
                        follow_redirects=True)
    assert again.status_code == 200 and "already ended" in again.get_data(as_text=True)


def test_schedule_run_now_pause_resume(as_key, jobs, adapter):
    client = as_key(ACME_KEY)
    token = csrf(client.get("/ui/schedules"))
    response = client.post("/ui/schedules/acme/nightly/run", data={"csrf_token": token})
    job_id = response.headers["Location"].rsplit("/", 1)[1]
    info = adapter.schedules().get("acme", "nightly")
    assert info.last_job_id == job_id and info.enabled
    assert adapter.get(job_id).links["schedule"] == "nightly"
    client.post("/ui/schedules/acme/nightly/pause", data={"csrf_token": token})
    assert not adapter.schedules().get("acme", "nightly").enabled
    client.post("/ui/schedules/acme/nightly/resume", data={"csrf_token": token})
    assert adapter.schedules().get("acme", "nightly").enabled


HOSTILE = ["'\"><script>alert(1)</script>", "%00", "\x00", "../../etc/passwd", "a" * 5000,
           "1e999", "-1", "NaN", "{{7*7}}", "ü" * 50, "1|" + "x" * 300, "|", "9" * 400]


def test_hostile_filters_are_never_a_500(as_key, jobs):
    client = as_key(OPERATOR_KEY)
    for value in HOSTILE:
        for field in ("state", "type", "queue", "after", "before", "cursor", "tenant", "q"):
            response = client.get("/", query_string={field: value})
            assert response.status_code in (200, 302), (field, value, response.status_code)
            assert "<script>alert(1)</script>" not in response.get_data(as_text=True)
        for path in (f"/ui/jobs/{value}", f"/ui/workflows/{value}",
                     f"/ui/schedules/{value}/{value}/run", f"/ui/queues/{value}/pause",
                     f"/ui/api/jobs/{value}", f"/ui/bulk?action={value}",
                     f"/ui/failures?tenant={value}", f"/ui/api/counts?tenant={value}",
                     f"/ui/audit?before={value}", f"/login?next={value}"):
            response = client.get(path)
            assert response.status_code < 500, (path, response.status_code)
    assert client.get("/", query_string={"after": "2030-01-01T00:00",
                                         "before": "2020-01-01"}).status_code == 200


def test_security_headers(as_key):
    response = as_key(ACME_KEY).get("/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


def test_static_files_ship_with_the_package(app):
    client = app.test_client()  # no session: the login page needs its style
    for name in ("dashboard.css", "dashboard.js", "charts.js", "uplot/uPlot.iife.min.js",
                 "uplot/uPlot.min.css"):
        assert client.get(f"/ui/static/{name}").status_code == 200, name


def test_filter_by_a_payload_field_and_no_bulk_action_over_it(as_key, adapter):
    seven = adapter.enqueue("demo.echo", {"message": "for 7"}, tenant="acme")
    other = adapter.enqueue("demo.echo", {"message": "for 8"}, tenant="acme")
    page = as_key(ACME_KEY).get("/?payload=message%3Dfor 7").get_data(as_text=True)
    assert seven.id in page and other.id not in page
    assert "For every job matching this filter" not in page  # no bulk action offered
    refused = as_key(ACME_KEY).get("/ui/bulk?action=cancel&payload=message%3Dfor 7")
    assert refused.status_code == 302 and "/ui/bulk" not in refused.headers["Location"]
    assert adapter.get(seven.id).state.value == "queued"
    bad = as_key(ACME_KEY).get("/?payload=no-equals-sign")
    assert bad.status_code == 200 and "field=value" in bad.get_data(as_text=True)


def test_a_queues_throughput_counts_the_attempts_that_ended_per_minute(as_key, adapter):
    import time

    from tests.test_ledger_scripts import job

    minute = int(time.time() // 60) * 60 - 60  # the last whole minute
    for n in range(10):
        rec = job(queue="mail", created_at=minute)
        adapter.ledger.create_many([rec], minute)
        adapter.ledger.claim(rec["id"], rec["token"], "w", minute + 1)
        adapter.ledger.finish(rec["id"], rec["token"], "succeeded" if n % 2 else "failed",
                              "1" if n % 2 else "{}", now=minute + 2)
    later = job(queue="mail", state="scheduled", run_at=time.time() + 3600)
    adapter.ledger.create_many([later], time.time())
    (mail,) = [q for q in adapter.queues().list() if q.name == "mail"]
    assert mail.finished_per_minute == 10 / 5 and mail.queued == 0 and mail.waiting == 1
    page = as_key(OPERATOR_KEY).get("/ui/queues").get_data(as_text=True)
    assert "<td>2.0</td>" in page


def test_the_workers_page_lists_the_jobs_in_hand(as_key, adapter):
    from tests.test_ledger_scripts import job

    running = job(tenant="acme")
    adapter.ledger.create_many([running], 1.0e9)
    assert adapter.ledger.claim(running["id"], running["token"], "host-a:4242", 1.0e9).action == "run"
    page = as_key(OPERATOR_KEY).get("/ui/workers").get_data(as_text=True)
    assert f'data-job="{running["id"]}"' in page and "host-a:4242" in page
    assert as_key(ACME_KEY).get("/ui/workers").status_code == 403
