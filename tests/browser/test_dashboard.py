"""The operator's page in real Chromium against the Procfile's web process, a real
worker and a real scheduler, on every engine leg."""

from __future__ import annotations

import uuid

import pytest

from adapters import JobOptions, JobState
from tests.api.conftest import ACME_KEY, GLOBEX_KEY
from tests.browser.conftest import OPERATOR_KEY, SCREENSHOTS, sign_in
from tests.harness import wait_until

pytestmark = pytest.mark.timeout(300)


def _ended(stack, job_id, state=None):
    return stack.engine.wait_for(job_id, None if state is None else [state], timeout=60)


def test_sign_in_find_a_job_and_watch_its_progress(page, stack):
    page.goto(f"{stack.url}/")
    assert "/login" in page.url
    page.fill("input[name=api_key]", "not-a-key-of-anyone")
    page.click("button[type=submit]")
    assert page.locator(".flash.error").inner_text().startswith("That API key is not valid")
    sign_in(page, stack.url, ACME_KEY)
    slow = stack.adapter.enqueue("demo.sleep", {"seconds": 6, "steps": 6}, tenant="acme")
    page.fill("input[name=q]", slow.id)
    page.click("form.find button")
    page.wait_for_url(f"{stack.url}/ui/jobs/{slow.id}")
    # the page polls: the progress text moves on without a reload, then the state ends
    text = page.locator("#progress-text")
    page.wait_for_function("() => /^[1-5]\\/6/.test(document.getElementById('progress-text')"
                           ".textContent)")
    first = text.inner_text()
    page.wait_for_function("(before) => { const t = document.getElementById('progress-text');"
                           " return t && t.textContent !== before; }", arg=first)
    page.wait_for_selector(".headline .s-succeeded", timeout=60_000)
    assert "6/6" in page.locator("#progress-text").inner_text()
    assert page.locator("ol.timeline li").count() == 1


def test_retry_a_failed_job(page, stack):
    token = uuid.uuid4().hex
    failed = stack.adapter.enqueue("api.fail_once", {"token": token},
                                   JobOptions(max_retries=0), tenant="acme")
    _ended(stack, failed.id, JobState.FAILED)
    sign_in(page, stack.url, ACME_KEY)
    page.goto(f"{stack.url}/ui/failures")
    assert "api.fail_once" in page.locator("main table").inner_text()  # grouped, or listed
    page.goto(f"{stack.url}/ui/jobs/{failed.id}")
    assert "failing once on purpose" in page.locator(".error-box").inner_text()
    page.click("#retry")
    page.click("#confirm")
    page.wait_for_selector(".flash >> text=Retried as job")
    new_id = page.url.rsplit("/", 1)[1]
    assert new_id != failed.id
    page.wait_for_selector(".headline .s-succeeded", timeout=60_000)
    assert stack.adapter.get(new_id).retry_of == failed.id


def test_run_a_schedule_now(page, stack):
    stack.adapter.schedules().create("acme", "nightly-report", "demo.echo",
                                     {"message": "by hand"}, every=86400)
    sign_in(page, stack.url, ACME_KEY)
    page.goto(f"{stack.url}/ui/schedules")
    page.click("tr[data-schedule='nightly-report'] >> text=Run now…")
    page.click("#confirm")
    page.wait_for_selector(".headline .s-succeeded", timeout=60_000)
    job_id = page.url.rsplit("/", 1)[1]
    assert stack.adapter.schedules().get("acme", "nightly-report").last_job_id == job_id


def test_pause_a_queue_and_see_its_jobs_wait(page, stack):
    sign_in(page, stack.url, OPERATOR_KEY)
    page.goto(f"{stack.url}/ui/queues/slow/pause")
    page.click("#confirm")
    page.wait_for_selector("tr[data-queue='slow'] >> text=paused")
    waiting = stack.adapter.enqueue("demo.echo", {"message": "wait"},
                                    JobOptions(queue="slow"), tenant="acme")
    control = stack.adapter.enqueue("demo.echo", {"message": "go"}, tenant="acme")
    _ended(stack, control.id, JobState.SUCCEEDED)  # the worker is up and taking jobs
    page.goto(f"{stack.url}/ui/jobs/{waiting.id}")
    assert page.locator(".headline .state").inner_text() == "queued"
    assert stack.adapter.get(waiting.id).state is JobState.QUEUED
    page.goto(f"{stack.url}/ui/queues/slow/resume")
    page.click("#confirm")
    _ended(stack, waiting.id, JobState.SUCCEEDED)


def test_bulk_retry_a_filter(page, stack):
    kind = uuid.uuid4().hex[:8]
    failed = [stack.adapter.enqueue("api.fail_once", {"token": f"{kind}-{i}"},
                                    JobOptions(max_retries=0), tenant="acme") for i in range(3)]
    for job in failed:
        _ended(stack, job.id, JobState.FAILED)
    sign_in(page, stack.url, ACME_KEY)
    page.goto(f"{stack.url}/ui/bulk?action=retry&state=failed&type=api.fail_once")
    page.click("#confirm")
    wait_until(lambda: len([j for j in stack.adapter.list(tenant="acme", job_type="api.fail_once",
                                                          limit=200)[0]
                            if j.retry_of in {f.id for f in failed}]) == 3, 60, 0.2,
               "the bulk retry to create three retries")


def test_a_tenant_cannot_see_another_tenants_job(page, stack):
    theirs = stack.adapter.enqueue("demo.echo", {"message": "acme only"}, tenant="acme")
    sign_in(page, stack.url, GLOBEX_KEY)
    response = page.goto(f"{stack.url}/ui/jobs/{theirs.id}")
    assert response.status == 404
    assert "not found" in page.locator("main").inner_text()
    page.goto(f"{stack.url}/")
    assert theirs.id not in page.content()


def test_screenshots_of_every_page(browser, stack):
    """Last: a picture of each page, from an operator's session, into var/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    jobs = stack.adapter.list(tenant="acme", limit=5)[0]
    flow = stack.adapter.enqueue_workflow("chain", [("demo.echo", {"message": "a"}, None),
                                                    ("demo.echo", {"message": "b"}, None)],
                                          tenant="acme")
    pages = {"login": "/login", "jobs": "/?tenant=acme", "failures": "/ui/failures?tenant=acme",
             "queues": "/ui/queues", "workers": "/ui/workers", "schedules": "/ui/schedules",
             "workflow": f"/ui/workflows/{flow.id}", "audit": "/ui/audit",
             "charts": "/ui/charts"}
    if jobs:
        pages["job"] = f"/ui/jobs/{jobs[0].id}"
    for size, viewport in (("", {"width": 1280, "height": 800}),
                           ("-phone", {"width": 390, "height": 844})):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.goto(f"{stack.url}/login")
        page.screenshot(path=str(SCREENSHOTS / f"login{size}.png"))
        sign_in(page, stack.url, OPERATOR_KEY)
        for name, path in pages.items():
            if name == "login":
                continue
            response = page.goto(f"{stack.url}{path}")
            assert response.status == 200, (name, response.status)
            if name == "charts" and callable(getattr(stack.adapter, "search", None)):
                page.wait_for_selector(".uplot canvas")  # drawn from the per-minute JSON
            page.screenshot(path=str(SCREENSHOTS / f"{name}{size}.png"), full_page=True)
        context.close()
        assert not errors, errors  # no script error, nothing the CSP refused
    assert (SCREENSHOTS / "jobs.png").stat().st_size > 0
