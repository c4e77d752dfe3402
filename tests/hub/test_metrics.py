"""The operators' metrics (hub.metrics): who may scrape, and each signal moving after its flow."""
from __future__ import annotations

import json
import re

import pytest
import responses

from hub.extensions import db
from hub.http import session
from hub.mail import queue_email
from hub.worker import Scheduler, make_worker
from tests.hub.conftest import hub_test_plugins
from tests.workers import make_connection

TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": hub_test_plugins(), "HUB_METRICS_TOKEN": TOKEN}


@pytest.fixture(autouse=True)
def empty_redis(redis_server):
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()


def scrape(client) -> dict[tuple, float]:
    """Every sample of a scrape: (name, sorted labels) → value."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.mimetype == "text/plain"
    samples = {}
    for line in response.get_data(as_text=True).splitlines():
        match = re.fullmatch(r"([a-z_:]+)(?:\{(.*)\})? (\S+)", line)
        if match and not line.startswith("#"):
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', match.group(2) or "")))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_only_operators_and_the_scrape_token_may_read_the_metrics(client, operator_client, admin):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert operator_client.get("/metrics").status_code == 200


def test_without_a_token_configured_no_bearer_opens_them(app, client):
    app.config["HUB_METRICS_TOKEN"] = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_webhook_intake_is_counted_by_outcome(app, client):
    connection = make_connection(webhook_secret="tiny-secret-0123456789abcdef")
    endpoint = connection.endpoint_id
    before = scrape(client)

    def post(token, secret="tiny-secret-0123456789abcdef"):
        return client.post(f"/webhooks/tiny_example/{endpoint}", data=json.dumps({"data": {}, "id": token}),
                           headers={"Content-Type": "application/json", "X-Tiny-Secret": secret})

    assert post("one").status_code == 200
    assert post("one").json["status"] == "duplicate"
    assert post("two", secret="wrong-secret-0123456789abcdef").status_code in (400, 401, 403)
    client.post("/webhooks/tiny_example/not-an-endpoint", data="{}")
    after = scrape(client)
    for outcome in ("accepted", "duplicate", "refused", "unknown_endpoint"):
        assert value(after, "hub_webhook_deliveries_total", plugin="tiny_example", outcome=outcome) == \
            value(before, "hub_webhook_deliveries_total", plugin="tiny_example", outcome=outcome) + 1, outcome
    # The queue's depth and its oldest job, read from Redis at the scrape.
    assert value(after, "hub_queue_depth", queue="webhooks") == 1
    assert value(after, "hub_queue_oldest_job_age_seconds", queue="webhooks") >= 0
    assert ("hub_queue_depth", (("queue", "mail"),)) in after


def test_a_job_run_its_email_and_its_durable_row_are_counted(app, client):
    """A worker runs the email's job: its run, its duration, the email and the row's status."""
    app.config["SMTP_URL"] = ""
    before = scrape(client)
    queue_email("ada@example.com", "Hi", "Hello", idempotency_key="metrics-email")
    db.session.commit()
    waiting = scrape(client)
    assert value(waiting, "hub_queue_depth", queue="mail") == 1
    assert value(waiting, "hub_durable_work", kind="hub.mail.send_email", status="pending") == 1
    make_worker(app, ["mail"], None).work(burst=True)
    after = scrape(client)
    job = "hub.mail.send_email"
    assert value(after, "hub_job_runs_total", job=job, status="finished") == \
        value(before, "hub_job_runs_total", job=job, status="finished") + 1
    assert value(after, "hub_job_duration_seconds_count", job=job) == \
        value(before, "hub_job_duration_seconds_count", job=job) + 1
    assert value(after, "hub_emails_total", outcome="outbox") == value(before, "hub_emails_total", outcome="outbox") + 1
    assert value(after, "hub_durable_work", kind="hub.mail.send_email", status="pending") == 0
    assert ("hub_durable_work", (("kind", "hub.mail.send_email"), ("status", "done"))) not in after  # never counted
    assert value(after, "hub_queue_depth", queue="mail") == 0


@responses.activate
def test_provider_calls_are_counted_by_status_429_included(client):
    responses.get("https://api.provider.example/a", status=200)
    responses.get("https://api.provider.example/b", status=429)
    before = scrape(client)
    session().get("https://api.provider.example/a")
    session().get("https://api.provider.example/b")
    session().get("https://api.provider.example/b")
    after = scrape(client)
    assert value(after, "hub_provider_calls_total", plugin="hub", code="429") == \
        value(before, "hub_provider_calls_total", plugin="hub", code="429") + 2
    assert value(after, "hub_provider_calls_total", plugin="hub", code="200") == \
        value(before, "hub_provider_calls_total", plugin="hub", code="200") + 1


def test_a_scheduler_tick_is_timed(app, client):
    before = value(scrape(client), "hub_scheduler_tick_seconds_count")
    Scheduler(app).run_once()
    assert value(scrape(client), "hub_scheduler_tick_seconds_count") == before + 1


def test_no_label_carries_an_organization_or_a_connection(app, client):
    connection = make_connection(webhook_secret="tiny-secret-0123456789abcdef")
    client.post(f"/webhooks/tiny_example/{connection.endpoint_id}", data=json.dumps({"data": {}, "id": "x"}),
                headers={"Content-Type": "application/json", "X-Tiny-Secret": "tiny-secret-0123456789abcdef"})
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True)
    assert connection.id not in text and connection.endpoint_id not in text and "Acme" not in text


def test_a_worker_machine_serves_its_counts_on_its_own_port(app):
    """``hub worker --metrics-port``: a machine without a web process is scraped there."""
    import socket

    import requests

    from hub.metrics import serve_metrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    Scheduler(app).run_once()
    serve_metrics(port, "127.0.0.1")
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    count = next(line for line in text.splitlines() if line.startswith("hub_scheduler_tick_seconds_count"))
    assert float(count.split()[1]) >= 1
