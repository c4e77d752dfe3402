"""register_webhook: idempotent, recovers a lost secret, and runs in a real worker process."""
import os
import subprocess
import sys

import pytest

from hub.connections import webhook_url
from hub.extensions import db
from hub.models import AuditEvent, Connection
from plugins.wecp_lever.jobs import register_webhook
from plugins.wecp_lever.models import Webhook
from tests.conftest import csrf_token
from tests.plugins.wecp_lever.test_connections import (  # noqa: F401
    CLIENT_ID,
    CLIENT_SECRET,
    PAGE,
    connect,
    fresh_sandbox,
    make_pg_user,
    pg_client,
    the_connection,
)


@pytest.fixture
def app_config(sandbox, request):
    mode = getattr(request, "param", "inline")
    return {"LEVER_SANDBOX_URL": sandbox.url, "HUB_QUEUE_MODE": mode, "LEVER_MAX_RETRIES": 0}


def archive_hook():
    return db.session.scalar(db.select(Webhook).filter_by(event="candidateArchiveChange"))


def test_connecting_registers_a_stage_change_and_an_archive_change_webhook(pg_app, pg_client, sandbox):
    connect(pg_client, sandbox)
    conn = the_connection()
    hooks = {h["event"]: h for h in sandbox.admin.webhooks("acme")}
    assert sorted(hooks) == ["candidateArchiveChange", "candidateStageChange"]
    assert hooks["candidateStageChange"]["id"] == conn.webhook_id
    assert conn.webhook_secret == hooks["candidateStageChange"]["configuration"]["signatureToken"]
    row = archive_hook()
    assert row.webhook_id == hooks["candidateArchiveChange"]["id"] and row.connection_id == conn.id
    assert row.secret == hooks["candidateArchiveChange"]["configuration"]["signatureToken"]
    assert row.secret not in row.secret_ciphertext  # stored encrypted, like the connection's
    assert {h["url"] for h in hooks.values()} == {webhook_url(conn)}


def test_a_second_run_keeps_the_webhooks(pg_app, pg_client, sandbox):
    connect(pg_client, sandbox)
    conn = the_connection()
    first = sandbox.admin.webhooks("acme")
    assert register_webhook(conn.id) == {"outcome": "webhook_ready", "status": "done", "created": False}
    assert sandbox.admin.webhooks("acme") == first


def test_a_webhook_whose_secret_we_lack_is_recreated(pg_app, pg_client, sandbox):
    connect(pg_client, sandbox)
    conn = the_connection()
    old_id, archive_id = conn.webhook_id, archive_hook().webhook_id
    conn.webhook_secret = None  # as after a crash between creating it and saving the token
    db.session.commit()
    assert register_webhook(conn.id) == {"outcome": "webhook_ready", "status": "done", "created": True}
    hooks = {h["event"]: h for h in sandbox.admin.webhooks("acme")}
    conn = the_connection()
    assert len(sandbox.admin.webhooks("acme")) == 2
    assert hooks["candidateStageChange"]["id"] == conn.webhook_id and conn.webhook_id != old_id
    assert hooks["candidateStageChange"]["url"] == webhook_url(conn)
    assert conn.webhook_secret == hooks["candidateStageChange"]["configuration"]["signatureToken"]
    assert hooks["candidateArchiveChange"]["id"] == archive_id  # the other one is kept


def test_a_connection_from_before_archive_webhooks_gets_one(pg_app, pg_client, sandbox):
    connect(pg_client, sandbox)
    conn = the_connection()
    row = archive_hook()
    old_archive_id = row.webhook_id
    db.session.delete(row)  # its secret is unknown now: the webhook at our URL must be replaced
    db.session.commit()
    assert register_webhook(conn.id)["created"] is True
    hooks = {h["event"]: h for h in sandbox.admin.webhooks("acme")}
    assert len(sandbox.admin.webhooks("acme")) == 2 and hooks["candidateStageChange"]["id"] == conn.webhook_id
    assert archive_hook().webhook_id == hooks["candidateArchiveChange"]["id"] != old_archive_id
    assert archive_hook().secret == hooks["candidateArchiveChange"]["configuration"]["signatureToken"]


def test_failure_to_delete_the_webhook_on_revoke_is_recorded_and_shown(pg_app, pg_client, sandbox):
    connect(pg_client, sandbox)
    sandbox.admin.add_fault(route="^/v1/webhooks/", error_rate=1, status=500)
    response = pg_client.post("/integrations/wecp_lever/revoke",
                              data={"csrf_token": csrf_token(pg_client, PAGE)})
    page = pg_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "cleaning up in Lever failed" in page
    event = db.session.scalar(db.select(AuditEvent).filter_by(action="connection.disconnected"))
    assert "500" in event.details["provider_cleanup_error"]
    assert the_connection().status == Connection.NOT_CONNECTED


@pytest.mark.slow
@pytest.mark.parametrize("app_config", ["rq"], indirect=True)
def test_setting_up_until_a_worker_runs_the_on_connect_job(pg_app, pg_client, sandbox):
    connect(pg_client, sandbox)
    assert the_connection().status == Connection.SETTING_UP
    assert "Setting up…" in pg_client.get(PAGE).get_data(as_text=True)
    cfg = pg_app.config
    env = dict(os.environ, PYTHONPATH=os.getcwd(), DATABASE_URL=cfg["DATABASE_URL"],
               REDIS_URL=cfg["REDIS_URL"], HUB_ENCRYPTION_KEYS=",".join(cfg["HUB_ENCRYPTION_KEYS"]),
               HUB_BASE_URL=cfg["HUB_BASE_URL"], LEVER_ENV="local",
               LEVER_SANDBOX_URL=sandbox.url, LEVER_CLIENT_ID=CLIENT_ID,
               LEVER_CLIENT_SECRET=CLIENT_SECRET, HUB_PLUGINS="plugins.wecp_lever")
    subprocess.run([sys.executable, "-m", "hub.cli", "worker", "--burst"], env=env, check=True,
                   timeout=120, capture_output=True)
    conn = the_connection()
    assert conn.status == Connection.ACTIVE
    assert [h["url"] for h in sandbox.admin.webhooks("acme")] == [webhook_url(conn)] * 2  # stage and archive changes
