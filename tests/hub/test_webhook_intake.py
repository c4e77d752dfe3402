"""Webhook intake's fast path: cached endpoints stay correct across processes, the INSERT dedupes, outages answer right."""
from __future__ import annotations

import json
from contextlib import contextmanager

import psycopg
import pytest

from hub import create_app
from hub.extensions import db
from hub.inbox import WebhookDelivery, endpoint_cache, job_id, process_delivery
from hub.jobs import get_queue
from hub.models import Connection, utcnow
from tests.conftest import base_config, sign_in
from tests.hub.conftest import hub_test_plugins
from tests.workers import make_connection

OLD, NEW = "old-secret-0123456789abcdef", "new-secret-0123456789abcdef"
PING = {"data": {"what": "a ping"}}


@pytest.fixture(autouse=True)
def empty_redis(redis_server):
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()


@pytest.fixture
def conn(app):
    return make_connection(webhook_secret=OLD)


@pytest.fixture
def other_process(app, redis_server):
    """A second hub app on the same database and Redis: another web process, with its own cache."""
    other = create_app(base_config(app.config["DATABASE_URL"], redis_server.url, HUB_PLUGINS=hub_test_plugins()))

    @contextmanager
    def connection(connection_id):
        with other.app_context():
            row = db.session.get(Connection, connection_id)
            yield row
            db.session.commit()
            db.session.remove()
    other.connection = connection
    return other


def post(client, endpoint_id, secret, token):
    """One delivery of the tiny plugin: ``token`` is its id (so its dedupe key), ``secret`` signs it."""
    return client.post(f"/webhooks/tiny_example/{endpoint_id}", data=json.dumps(dict(PING, id=token)),
                       headers={"Content-Type": "application/json", "X-Tiny-Secret": secret})


def stored() -> dict[str, WebhookDelivery]:
    db.session.remove()
    return {d.dedupe_key: d for d in db.session.scalars(db.select(WebhookDelivery))}


def test_the_endpoint_is_cached_after_the_first_delivery(app, client, conn):
    assert endpoint_cache().get(("tiny_example", conn.endpoint_id)) is None
    assert post(client, conn.endpoint_id, OLD, "t1").status_code == 200
    cached = endpoint_cache().get(("tiny_example", conn.endpoint_id))
    assert cached is not None and cached.id == conn.id and cached.webhook_secret == OLD
    assert OLD not in repr(cached)
    assert post(client, conn.endpoint_id, OLD, "t2").status_code == 200
    assert set(stored()) == {"t1", "t2"}


def test_a_secret_rotated_by_another_process_applies_at_once(app, client, conn, other_process):
    assert post(client, conn.endpoint_id, OLD, "t1").status_code == 200  # cached with OLD
    with other_process.connection(conn.id) as row:
        row.webhook_secret = NEW
    # The cached copy still holds OLD: the INSERT's check refuses it, the row is read again.
    assert post(client, conn.endpoint_id, OLD, "t2").status_code == 401
    # Refused by the stale copy at first (it says OLD), then accepted after a fresh read.
    assert post(client, conn.endpoint_id, NEW, "t3").status_code == 200
    assert set(stored()) == {"t1", "t3"}
    assert get_queue("webhooks").count == 2


def test_a_secret_rotated_by_this_process_after_caching_the_new_one_still_accepts(app, client, conn,
                                                                                  other_process):
    # The other order: the copy is refreshed by a refusal first, then deliveries flow again.
    with other_process.connection(conn.id) as row:
        row.webhook_secret = NEW
    assert post(client, conn.endpoint_id, NEW, "t1").status_code == 200
    with other_process.connection(conn.id) as row:
        row.webhook_secret = OLD
    assert post(client, conn.endpoint_id, OLD, "t2").status_code == 200
    assert post(client, conn.endpoint_id, NEW, "t3").status_code == 401
    assert set(stored()) == {"t1", "t2"}


def test_a_disconnect_by_another_process_applies_at_once(app, client, conn, other_process):
    assert post(client, conn.endpoint_id, OLD, "t1").status_code == 200
    with other_process.connection(conn.id) as row:
        row.webhook_secret = None
        row.disconnected_at = utcnow()
    assert post(client, conn.endpoint_id, OLD, "t2").status_code == 404
    assert set(stored()) == {"t1"}
    assert endpoint_cache().get(("tiny_example", conn.endpoint_id)) is None


def test_a_disconnect_that_keeps_the_secret_is_still_seen(app, client, conn, other_process):
    # Only disconnected_at changes: the INSERT's own check on it refuses the cached copy.
    assert post(client, conn.endpoint_id, OLD, "t1").status_code == 200
    with other_process.connection(conn.id) as row:
        row.disconnected_at = utcnow()
    assert post(client, conn.endpoint_id, OLD, "t2").status_code == 404
    assert set(stored()) == {"t1"}


def test_a_reconnect_moves_the_endpoint_and_the_old_url_stops_at_once(app, client, conn, other_process):
    old_endpoint = conn.endpoint_id
    assert post(client, old_endpoint, OLD, "t1").status_code == 200
    with other_process.connection(conn.id) as row:
        row.endpoint_id = "reconnected-endpoint-0123456789"  # the secret kept, for this test
        new_endpoint = row.endpoint_id
    assert post(client, old_endpoint, OLD, "t2").status_code == 404
    assert post(client, new_endpoint, OLD, "t3").status_code == 200
    with other_process.connection(conn.id) as row:
        row.webhook_secret = NEW  # the on-connect job registers a new webhook
    assert post(client, new_endpoint, OLD, "t4").status_code == 401
    assert post(client, new_endpoint, NEW, "t5").status_code == 200
    rows = stored()
    assert set(rows) == {"t1", "t3", "t5"} and rows["t5"].connection_id == conn.id


def test_a_revoke_by_another_process_still_stores(app, client, conn, other_process):
    assert post(client, conn.endpoint_id, OLD, "t1").status_code == 200
    with other_process.connection(conn.id) as row:
        row.revoked_at = utcnow()
    assert post(client, conn.endpoint_id, OLD, "t2").status_code == 200
    assert set(stored()) == {"t1", "t2"}


def test_a_duplicate_is_acknowledged_once_whichever_process_gets_it(app, client, conn, other_process):
    assert post(client, conn.endpoint_id, OLD, "same").status_code == 200
    again = post(client, conn.endpoint_id, OLD, "same")  # cached copy, then the fresh read
    assert (again.status_code, again.json) == (200, {"status": "duplicate"})
    elsewhere = post(other_process.test_client(), conn.endpoint_id, OLD, "same")
    assert (elsewhere.status_code, elsewhere.json) == (200, {"status": "duplicate"})
    [row] = stored().values()
    assert row.status == "pending"
    assert get_queue("webhooks").job_ids == [job_id(row.id)]


def test_a_delivery_stored_already_by_someone_else_is_a_duplicate_on_first_sight(app, client, conn):
    db.session.add(WebhookDelivery(connection_id=conn.id, plugin_key="tiny_example", source="tiny",
                                   event="ping", dedupe_key="seen", payload={},
                                   status="done"))
    db.session.commit()
    response = post(client, conn.endpoint_id, OLD, "seen")
    assert (response.status_code, response.json) == (200, {"status": "duplicate"})
    assert stored()["seen"].status == "done" and get_queue("webhooks").count == 0


def test_redis_down_with_a_cached_endpoint_still_acknowledges(app, client, conn, redis_server):
    assert post(client, conn.endpoint_id, OLD, "t1").status_code == 200
    redis_server.stop()
    try:
        response = post(client, conn.endpoint_id, OLD, "t2")
    finally:
        redis_server.start()
    assert response.status_code == 200
    rows = stored()
    # Both stored, pending; Redis came back empty, so the sweeper enqueues both.
    assert (rows["t1"].status, rows["t2"].status) == ("pending", "pending")
    assert get_queue("webhooks").job_ids == []


def test_intake_ignores_the_session_cookie(app, client, conn, admin):
    sign_in(client, admin.email)
    response = post(client, conn.endpoint_id, OLD, "t1")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers and "Cookie" not in response.headers.get("Vary", "")
    assert response.headers["X-Frame-Options"] == "DENY"  # the security headers still apply
    assert client.get("/settings/integrations").status_code == 200  # still signed in


@contextmanager
def database_refusing_connections(url: str):
    """The hub's database down: its connections cut, new ones refused, until the block ends."""
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", (name,))
    try:
        yield
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def cut_connections(url: str) -> None:
    """PostgreSQL restarted: every open connection of the hub's database is gone."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", (name,))


def test_postgresql_restart_and_outage_with_a_cached_endpoint(pg_app, postgres_url):
    client = pg_app.test_client()
    endpoint = make_connection(webhook_secret=OLD).endpoint_id
    db.session.remove()
    assert post(client, endpoint, OLD, "t1").status_code == 200

    cut_connections(postgres_url)  # the kept intake connection is dead: a new one, same request
    assert post(client, endpoint, OLD, "t2").status_code == 200

    with database_refusing_connections(postgres_url):
        down = post(client, endpoint, OLD, "t3")
    assert down.status_code == 503 and down.headers["Retry-After"]

    assert post(client, endpoint, OLD, "t3").status_code == 200  # the sender's retry
    assert post(client, endpoint, OLD, "t4").status_code == 200
    rows = stored()
    assert set(rows) == {"t1", "t2", "t3", "t4"}
    assert sorted(get_queue("webhooks").job_ids) == sorted(job_id(r.id) for r in rows.values())


def test_sweeper_and_worker_see_a_fast_path_row_like_any_other(app, client, conn):
    assert post(client, conn.endpoint_id, OLD, "t1").status_code == 200
    row = stored()["t1"]
    assert (row.status, row.attempts, row.source, row.event) == ("pending", 0, "tiny", "ping")
    assert row.received_at is not None and row.due_at is not None
    assert row.payload["data"] == PING["data"] and json.dumps(row.payload)
    assert process_delivery(row.id)["status"] == "done"
