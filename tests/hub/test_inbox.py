"""The inbox: a stored delivery reaches its plugin's handler once, with its connection; outcomes recorded."""
from __future__ import annotations

from unittest import mock

import pytest

from hub import outbox
from hub.extensions import db, get_redis
from hub.inbox import WebhookDelivery, job_id, process_delivery
from hub.jobs import get_queue
from hub.models import utcnow
from hub.outcomes import Skipped
from hub.plugin import ConnectionUnusable
from hub.signals import connection_restored
from tests.hub.conftest import hub_test_plugins
from tests.plugins import tiny_example
from tests.workers import make_connection

TINY = "tests.plugins.tiny_example"


@pytest.fixture(autouse=True)
def empty_redis(redis_server):
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": hub_test_plugins(), "HUB_SWEEP_AFTER_SECONDS": 0}


def store(conn, key="k", status="pending", **payload) -> int:
    delivery = WebhookDelivery(connection_id=conn.id, plugin_key="tiny_example", source="tiny", event="ping",
                               dedupe_key=key, payload={"id": key, **payload}, status=status)
    db.session.add(delivery)
    db.session.commit()
    return delivery.id


def reload(delivery_id) -> WebhookDelivery:
    db.session.expire_all()
    return db.session.get(WebhookDelivery, delivery_id)


def test_the_handler_gets_the_stored_event_and_its_connection_once(app):
    conn = make_connection()
    delivery_id = store(conn)
    seen = []
    real = tiny_example.count_ping
    with mock.patch.object(tiny_example, "count_ping", side_effect=lambda d, c: seen.append((d.id, c.id)) or real(d, c)):
        assert process_delivery(delivery_id)["status"] == "done"
        assert process_delivery(delivery_id)["outcome"] == "already_done"
    assert seen == [(delivery_id, conn.id)]
    row = reload(delivery_id)
    assert (row.status, row.attempts, row.summary) == ("done", 1, "counted")
    assert row.finished_at is not None
    assert get_redis().get("tiny:runs:k") == b"1"


def test_unusable_connection_pauses_and_restoring_it_resumes(app):
    conn = make_connection(revoked_at=utcnow(), revoked_reason="invalid_grant")
    delivery_id = store(conn)
    assert process_delivery(delivery_id)["outcome"] == "paused"
    assert reload(delivery_id).status == "paused" and get_redis().get("tiny:runs:k") is None

    conn.revoked_at = None
    db.session.commit()
    connection_restored.send(app, connection=conn)
    [job] = get_queue("webhooks").get_jobs()
    assert job.func_name == "hub.outbox.resume_connection" and job.args == [conn.id]
    outbox.resume_connection(conn.id)
    assert reload(delivery_id).status == "pending"
    assert job_id(delivery_id) in get_queue("webhooks").job_ids
    assert process_delivery(delivery_id)["status"] == "done"


def test_connection_unusable_raised_by_a_handler_pauses_without_retry(app):
    conn = make_connection()
    delivery_id = store(conn)
    with mock.patch.object(tiny_example, "count_ping", side_effect=ConnectionUnusable(conn.id, "revoked in the provider")):
        assert process_delivery(delivery_id)["outcome"] == "paused"
    row = reload(delivery_id)
    assert (row.status, row.error, row.attempts) == ("paused", "revoked in the provider", 1)


def test_a_failing_handler_is_retried_and_failed_after_the_last_try(app):
    conn = make_connection()
    delivery_id = store(conn, fail=5)
    fake_job = mock.Mock(retries_left=2)
    with mock.patch.object(outbox, "get_current_job", return_value=fake_job):
        with pytest.raises(outbox.WorkFailed):
            process_delivery(delivery_id)
    assert reload(delivery_id).status == "pending"  # RQ will retry
    fake_job.retries_left = 0
    with mock.patch.object(outbox, "get_current_job", return_value=fake_job):
        with pytest.raises(outbox.WorkFailed):
            process_delivery(delivery_id)
    row = reload(delivery_id)
    assert (row.status, row.attempts) == ("failed", 2)
    assert "failing on purpose" in row.error


def test_skipped_is_recorded_and_not_retried(app):
    conn = make_connection()
    delivery_id = store(conn)
    with mock.patch.object(tiny_example, "count_ping",
                           return_value=Skipped(reason="unsupported_event", message="unsupported event")):
        assert process_delivery(delivery_id)["status"] == "skipped"
    row = reload(delivery_id)
    assert (row.status, row.outcome, row.summary) == ("skipped", "skipped", "unsupported event")


def test_a_source_no_longer_installed_fails_the_delivery_with_its_reason(app):
    conn = make_connection()
    delivery = WebhookDelivery(connection_id=conn.id, plugin_key="tiny_example", source="gone", event="ping",
                               dedupe_key="g", payload={})
    db.session.add(delivery)
    db.session.commit()
    assert process_delivery(delivery.id)["status"] == "failed"
    assert "no webhook source" in reload(delivery.id).summary


def test_dedupe_keys_are_scoped_to_the_connection(app, client):
    """One organization's delivery never shadows another's with the same provider token."""
    import json

    a, b = make_connection(org_name="A"), make_connection(org_name="B")
    headers = {"X-Tiny-Secret": "tiny-secret"}
    for conn in (a, b):
        response = client.post(f"/webhooks/tiny_example/{conn.endpoint_id}", data=json.dumps({"id": "same"}),
                               headers=headers)
        assert response.json == {"status": "accepted"}
    rows = db.session.scalars(db.select(WebhookDelivery)).all()
    assert sorted(r.connection_id for r in rows) == sorted([a.id, b.id])
