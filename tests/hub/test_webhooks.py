"""Webhook intake: store before 2xx, dedupe, refuse bad input with 4xx, survive Redis and database outages."""
from __future__ import annotations

import io
import json
import threading
from datetime import timedelta

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import create_app
from hub.extensions import db, get_redis
from hub.inbox import WebhookDelivery, delivery_stats, job_id, parse_since
from hub.jobs import get_queue
from hub.models import utcnow
from hub.outbox import sweep
from hub.registry import get_plugin
from tests.conftest import base_config, csrf_token, sign_in
from tests.hub.conftest import hub_test_plugins
from tests.services import free_port
from tests.workers import live_server, make_connection, workers  # noqa: F401 (fixtures)

TINY = "tests.plugins.tiny_example"
SECRET = {"X-Tiny-Secret": "tiny-secret"}


@pytest.fixture(autouse=True)
def empty_redis(redis_server):
    # conftest's reset skips Redis on a database's first use: start every test from an empty Redis.
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": hub_test_plugins(), "HUB_SWEEP_AFTER_SECONDS": 0}


@pytest.fixture
def conn(app):
    return make_connection()


def url(conn) -> str:
    return f"/webhooks/tiny_example/{conn.endpoint_id}"


def deliveries() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(WebhookDelivery).order_by(WebhookDelivery.id)))


def queued_job_ids() -> list[str]:
    return get_queue("webhooks").job_ids


def test_delivery_is_stored_enqueued_and_acknowledged(client, conn):
    response = client.post(url(conn), data=json.dumps({"id": 1}), headers=SECRET)
    assert response.status_code == 200
    assert response.json == {"status": "accepted"}
    [row] = deliveries()
    assert (row.connection_id, row.plugin_key, row.source, row.event, row.dedupe_key) == \
        (conn.id, "tiny_example", "tiny", "ping", "1")
    assert row.payload == {"id": 1}
    assert row.status == "pending" and row.due_at is not None
    assert queued_job_ids() == [job_id(row.id)]


def test_duplicate_delivery_is_acknowledged_once(client, conn):
    for _ in range(3):
        response = client.post(url(conn), data=json.dumps({"id": 7}), headers=SECRET)
        assert response.status_code == 200
    assert response.json == {"status": "duplicate"}
    assert len(deliveries()) == 1
    assert len(queued_job_ids()) == 1


def test_bad_signature_is_401_and_stores_nothing(client, conn):
    response = client.post(url(conn), data=json.dumps({"id": 1}), headers={"X-Tiny-Secret": "nope"})
    assert response.status_code == 401
    assert deliveries() == [] and queued_job_ids() == []


def test_malformed_payload_is_400_and_stores_nothing(client, conn):
    response = client.post(url(conn), data=b"{not json", headers=SECRET)
    assert response.status_code == 400
    assert deliveries() == []


def test_ping_is_200_and_stores_nothing(client, conn):
    response = client.post(url(conn), data=json.dumps({"ping": True}), headers=SECRET)
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert deliveries() == []


def test_unknown_plugin_endpoint_or_disconnected_connection_is_404(client, conn):
    assert client.post(f"/webhooks/tiny_example/not-{conn.endpoint_id}", data=b"{}", headers=SECRET).status_code == 404
    assert client.post(f"/webhooks/nope/{conn.endpoint_id}", data=b"{}", headers=SECRET).status_code == 404
    # The endpoint id belongs to a tiny_example connection: under another plugin's key it is no one's.
    other = make_connection(plugin_key="another_plugin", provider="another")
    assert client.post(f"/webhooks/tiny_example/{other.endpoint_id}", data=b"{}", headers=SECRET).status_code == 404
    conn.disconnected_at = utcnow()
    db.session.commit()
    assert client.post(url(conn), data=json.dumps({"id": 1}), headers=SECRET).status_code == 404
    assert deliveries() == []


def test_revoked_connection_still_stores(client, conn):
    conn.revoked_at = utcnow()
    db.session.commit()
    assert client.post(url(conn), data=json.dumps({"id": 1}), headers=SECRET).status_code == 200
    assert len(deliveries()) == 1


def test_oversize_body_is_413_and_stores_nothing(client, conn, app):
    app.config["HUB_WEBHOOK_MAX_BYTES"] = 64
    body = json.dumps({"id": 1, "pad": "x" * 100}).encode()
    assert client.post(url(conn), data=body, headers=SECRET).status_code == 413
    # A body without Content-Length is read only up to the cap, and refused all the same.
    chunked = client.post(url(conn), input_stream=io.BytesIO(body), headers=SECRET,
                          environ_overrides={"wsgi.input_terminated": True})
    assert chunked.status_code == 413
    assert client.post(url(conn), data=json.dumps({"id": 1}), headers=SECRET).status_code == 200
    assert len(deliveries()) == 1


def test_redis_down_still_acknowledges_and_the_sweeper_enqueues_later(client, conn, redis_server):
    redis_server.stop()
    try:
        responses = [client.post(url(conn), data=json.dumps({"id": i}), headers=SECRET) for i in range(2)]
    finally:
        redis_server.start()
    assert [r.status_code for r in responses] == [200, 200]
    rows = deliveries()
    assert [r.status for r in rows] == ["pending", "pending"]
    assert queued_job_ids() == []

    assert sweep()["enqueued"] == 2
    assert [r.status for r in deliveries()] == ["pending", "pending"]
    assert sorted(queued_job_ids()) == sorted(job_id(r.id) for r in rows)


def test_database_down_is_503_so_the_sender_retries(redis_server):
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app(base_config(dead, redis_server.url, HUB_PLUGINS=[TINY]))
    response = app.test_client().post("/webhooks/tiny_example/some-endpoint", data=b'{"id": 1}', headers=SECRET)
    assert response.status_code == 503
    assert response.headers["Retry-After"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode())
       | st.builds(lambda i, extra: json.dumps({"id": i, "extra": extra}).encode(), JSON, JSON))
def test_no_body_ever_causes_a_500(client, conn, body):
    for headers in (SECRET, {}):
        response = client.post(url(conn), data=body, headers=headers)
        assert response.status_code in (200, 400, 401, 413), response.data


def test_sweeper_enqueues_pending_resumes_paused_and_rescues_expired_leases(app, conn):
    old = utcnow() - timedelta(hours=1)

    def row(key, status, **extra):
        d = WebhookDelivery(connection_id=conn.id, plugin_key="tiny_example", source="tiny", event="ping",
                            dedupe_key=key, payload={"id": key}, status=status, **extra)
        db.session.add(d)
        return d

    pending, paused = row("a", "pending", due_at=old), row("b", "paused")
    crashed = row("c", "running", lease_until=old, attempts=1)   # its worker died mid-run
    running = row("e", "running", lease_until=utcnow() + timedelta(minutes=5), attempts=1)
    done = row("d", "done")
    db.session.commit()
    sweep()
    db.session.expire_all()
    assert (pending.status, paused.status, crashed.status, running.status, done.status) == \
        ("pending", "pending", "running", "running", "done")
    assert sorted(queued_job_ids()) == sorted(job_id(d.id) for d in (pending, paused, crashed))


def test_sweeper_enqueues_again_queued_rows_whose_jobs_redis_lost(client, conn, redis_server):
    for i in range(2):
        assert client.post(url(conn), data=json.dumps({"id": i}), headers=SECRET).status_code == 200
    rows = deliveries()
    assert [r.status for r in rows] == ["pending", "pending"]
    redis_server.stop()  # restarted without persistence: the queue is empty, the rows say pending
    redis_server.start()
    assert queued_job_ids() == []
    assert sweep()["enqueued"] == 2
    assert sorted(queued_job_ids()) == sorted(job_id(r.id) for r in rows)
    assert sweep()["enqueued"] == 0  # jobs that exist are left alone


def test_delivery_stats_and_card_partial(app, conn, admin):
    from flask import g, render_template

    for key, status in (("a", "pending"), ("b", "failed"), ("c", "failed"), ("d", "paused"), ("e", "done")):
        db.session.add(WebhookDelivery(connection_id=conn.id, plugin_key="tiny_example", source="tiny",
                                       event="ping", dedupe_key=key, payload={}, status=status))
    db.session.commit()
    stats = delivery_stats(conn.id)
    assert (stats["queued"], stats["failed"], stats["paused"], stats["done"]) == (1, 2, 1, 1)
    assert stats["last_received_at"] is not None
    with app.test_request_context():
        g.user = admin
        html = render_template("hub/_delivery_stats.html",
                               card={"connection": conn, "plugin": get_plugin("tiny_example")})
    assert 'data-count="failed">2<' in html and "Retry failed" in html and 'name="csrf_token"' in html


def test_retry_failed_needs_an_admin_of_the_org_and_a_csrf_token(client, conn, make_user):
    failed = WebhookDelivery(connection_id=conn.id, plugin_key="tiny_example", source="tiny", event="ping",
                             dedupe_key="x", payload={"id": "x"}, status="failed", error="boom")
    db.session.add(failed)
    db.session.commit()
    path = f"/webhooks/connections/{conn.id}/retry-failed"
    assert client.post(path).status_code == 302  # not signed in: to the login page
    member = make_user(role="member")
    sign_in(client, member.email)
    assert client.post(path, data={"csrf_token": csrf_token(client, "/settings/integrations")}).status_code == 403
    client.post("/logout", data={"csrf_token": csrf_token(client, "/settings/integrations")})

    other = make_user(org="Other", role="admin")
    sign_in(client, other.email)
    token = csrf_token(client, "/settings/integrations")
    assert client.post(path, data={"csrf_token": token}).status_code == 404
    client.post("/logout", data={"csrf_token": token})

    admin = make_user(role="admin")
    sign_in(client, admin.email)
    assert client.post(path).status_code == 400  # no CSRF token
    token = csrf_token(client, "/settings/integrations")
    assert client.post(path, data={"csrf_token": token}).status_code == 302
    db.session.expire_all()
    assert failed.status == "pending" and failed.error is None
    assert queued_job_ids() == [job_id(failed.id)]


def test_events_replay_reenqueues_matching_deliveries(app, runner, conn):
    rows = []
    for key, status, age in (("a", "failed", 10), ("b", "done", 10), ("c", "failed", 600)):
        d = WebhookDelivery(connection_id=conn.id, plugin_key="tiny_example", source="tiny", event="ping",
                            dedupe_key=key, payload={"id": key}, status=status,
                            received_at=utcnow() - timedelta(minutes=age))
        db.session.add(d)
        rows.append(d)
    db.session.commit()
    result = runner.invoke(args=["events", "replay", "--since", "2h", "--status", "failed",
                                 "--plugin", "tiny_example"])
    assert result.exit_code == 0, result.output
    assert "replayed 1 deliveries" in result.output
    assert queued_job_ids() == [job_id(rows[0].id)]
    result = runner.invoke(args=["events", "replay", "--since", "yesterday"])
    assert result.exit_code != 0 and "ISO time" in result.output


def test_parse_since_reads_ages_and_iso_times():
    now = utcnow()
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2025-11-28T12:00:00Z").isoformat() == "2025-11-28T12:00:00"
    assert parse_since("2025-11-28T14:00:00+02:00").isoformat() == "2025-11-28T12:00:00"


@pytest.mark.slow
def test_same_delivery_posted_five_times_concurrently_gives_one_row_one_job_one_effect(
        pg_app, live_server, workers):
    conn = make_connection()
    endpoint = f"{live_server.url}/webhooks/tiny_example/{conn.endpoint_id}"
    barrier = threading.Barrier(5)
    statuses = []

    def post():
        barrier.wait()
        statuses.append(requests.post(endpoint, data=json.dumps({"id": "same"}), headers=SECRET, timeout=30).status_code)

    threads = [threading.Thread(target=post) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 5
    [row] = deliveries()
    assert queued_job_ids() == [job_id(row.id)]
    workers.run_burst()
    assert deliveries()[0].status == "done"
    r = get_redis()
    assert r.get("tiny:effects") == b"1" and r.get("tiny:runs:same") == b"1"
