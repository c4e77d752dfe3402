"""The end-to-end stack itself: its parts talk to each other, and stopping it leaves nothing."""
from __future__ import annotations

import time

import pytest
import requests

from hub.jobs import job
from tests.stack import HubStack, descendants, group_alive, loud_lines, running, wait_until
from tests.workers import children_of

pytestmark = pytest.mark.slow

METRICS_TOKEN = "e2e-metrics-token-0123456789abcdef"


@pytest.fixture(scope="module")
def stack_options():
    return {"workers": 1, "config": {"HUB_METRICS_TOKEN": METRICS_TOKEN}}


def scrape(stack) -> str:
    response = requests.get(stack.hub_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                            timeout=10)
    assert response.status_code == 200
    return response.text


def sample(text: str, name: str, **labels) -> float:
    """One sample's value in a scrape, 0 when absent (all of its labels given)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        metric, _, rest = line.partition("{") if "{" in line else (line.split(" ")[0], "", "")
        if metric != name or line.startswith("#"):
            continue
        found = ",".join(sorted(rest.split("}")[0].split(","))) if rest else ""
        if found == wanted:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_worker_sends_email_to_the_smtp_server(stack):
    from hub.extensions import db
    from hub.mail import queue_email

    def queue():
        queue_email("ada@example.com", "Hello from the stack", "Hi Ada", idempotency_key="e2e-stack-mail")
        db.session.commit()  # queue_email works in the caller's transaction

    stack.query(queue)
    message = stack.smtp.wait_for(lambda m: m["Subject"] == "Hello from the stack")
    assert message["To"] == "ada@example.com"
    assert "Hi Ada" in message.get_body(("plain",)).get_content()
    assert message["From"] == "WeCP <no-reply@wecp.test>"


def test_the_metrics_add_up_the_web_processes_and_the_workers(stack):
    """prometheus_client's multiprocess mode: the web's scrape shows what gunicorn's processes
    and the worker's two processes counted (an email job, its email, an intake answer, ticks)."""
    from hub.extensions import db
    from hub.mail import queue_email

    before = scrape(stack)
    plugin = stack.plugin_keys()[0]
    for _ in range(4):  # answered by either of gunicorn's processes
        requests.post(f"{stack.hub_url}/webhooks/{plugin}/not-an-endpoint", data="{}", timeout=10)

    def queue():
        queue_email("grace@example.com", "Counted", "Hi", idempotency_key="e2e-metrics-mail")
        db.session.commit()
    stack.query(queue)
    stack.smtp.wait_for(lambda m: m["Subject"] == "Counted")
    job = "hub.mail.send_email"
    wait_until(lambda: sample(scrape(stack), "hub_job_runs_total", job=job, status="finished")
               > sample(before, "hub_job_runs_total", job=job, status="finished"), 20, 0.2, "the job's count")
    after = scrape(stack)
    assert sample(after, "hub_emails_total", outcome="sent") == sample(before, "hub_emails_total", outcome="sent") + 1
    assert sample(after, "hub_job_runs_total", job=job, status="finished") == \
        sample(before, "hub_job_runs_total", job=job, status="finished") + 1
    assert sample(after, "hub_webhook_deliveries_total", plugin=plugin, outcome="unknown_endpoint") == \
        sample(before, "hub_webhook_deliveries_total", plugin=plugin, outcome="unknown_endpoint") + 4
    # The worker's scheduler ticks once a second, in its other process.
    wait_until(lambda: sample(scrape(stack), "hub_scheduler_tick_seconds_count")
               > sample(before, "hub_scheduler_tick_seconds_count"), 10, 0.2, "a scheduler tick counted")
    assert "# TYPE hub_durable_work gauge" in after
    assert 'hub_queue_depth{queue="mail"} 0.0' in after


def test_an_idle_worker_logs_no_error_and_still_takes_work(stack):
    """Idle longer than the hub's Redis socket timeout (5 s): RQ's blocking wait must not end in
    "could not connect to Redis instance" errors and a back-off while Redis is fine."""
    from hub.extensions import db
    from hub.mail import queue_email

    time.sleep(8)

    def queue():
        queue_email("idle@example.com", "After a quiet spell", "Hi", idempotency_key="e2e-idle-mail")
        db.session.commit()
    queued_at = time.monotonic()
    stack.query(queue)
    stack.smtp.wait_for(lambda m: m["Subject"] == "After a quiet spell")
    assert time.monotonic() - queued_at < 5  # taken at once, not after a back-off
    assert loud_lines(stack) == []


def test_reset_empties_the_database_sandbox_and_inbox(stack):
    from hub.extensions import db
    from hub.models import User

    stack.create_user("someone@acme.example", "a long password")
    stack.sandbox.admin.set_toggle("acme", False)
    stack.reset()
    assert stack.query(lambda: db.session.scalar(db.select(db.func.count(User.id)))) == 0
    assert stack.sandbox.admin.state("acme")["webhook_toggles"]["candidateStageChange"] is True
    assert stack.smtp.messages == []
    assert requests.get(stack.hub_url + "/readyz", timeout=5).status_code == 200


def test_stopping_a_stack_leaves_no_process(tmp_path, postgres_db, redis_server):
    """Even a worker's work process busy with a long job."""
    from tests.services import PostgresDatabase

    database = PostgresDatabase(admin_url=postgres_db.admin_url)
    stack = HubStack(tmp_path, database=database.url,
                     redis_url=redis_server.url.rsplit("/", 1)[0] + "/2", workers=2)
    try:
        stack.start()
        leaders = [proc.pid for proc in stack.procs.values()]
        assert len(leaders) == 3
        assert len(children_of(stack.procs["web"].pid)) == 2  # gunicorn's workers
        job_id = stack.enqueue(sleep, 120, retry=False)

        def started():
            from hub.jobs import get_queue

            with stack.app.app_context():
                return get_queue("default").fetch_job(job_id).get_status(refresh=True) == "started"
        wait_until(started, 20, what="the job to start")
        horses = [pid for proc in stack.workers for pid in descendants(proc.pid) if running(pid)]
        assert len(horses) == 2  # each worker's work process, one of them busy
    finally:
        stack.stop()
        database.drop()
    assert stack.orphans == []
    assert [pgid for pgid in leaders if group_alive(pgid)] == []
    assert [pid for pid in horses if running(pid)] == []


@job("default", retry=False)
def sleep(seconds: int):
    """A job that runs long enough to be found running (stopping the stack must end its work horse)."""
    time.sleep(seconds)
