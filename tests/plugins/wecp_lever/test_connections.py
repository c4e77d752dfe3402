"""Connect, Revoke, token refresh and the Integrations page, against the Lever sandbox."""
import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from hub import signals
from hub.connections import (
    HUB_PERIODIC_JOBS,
    TokenRefreshError,
    _store_tokens,
    access_token,
    refresh_idle_connections,
    webhook_url,
)
from hub.extensions import db
from hub.models import AuditEvent, Connection, utcnow
from hub.plugin import ConnectionUnusable
from plugins.wecp_lever.lever import LeverClient
from tests.conftest import csrf_token, sign_in

CLIENT_ID, CLIENT_SECRET = "wecp-hub-test", "test-client-secret"
CALLBACK = "http://hub.test/integrations/wecp_lever/connect/callback"
PAGE = "/settings/integrations"
OLIVIA = "b1f2c3d4-0000-4000-8000-000000000001"


@pytest.fixture(autouse=True)
def fresh_sandbox(sandbox):
    sandbox.admin.reset()
    sandbox.admin.add_client(CLIENT_ID, CLIENT_SECRET, [CALLBACK])


@pytest.fixture
def app_config(sandbox):
    return {"LEVER_SANDBOX_URL": sandbox.url, "HUB_QUEUE_MODE": "inline", "LEVER_MAX_RETRIES": 0}


@pytest.fixture
def pg_client(pg_app, make_pg_user):
    client = pg_app.test_client()
    sign_in(client, make_pg_user(role="admin").email)
    return client


@pytest.fixture
def make_pg_user(pg_app):
    from hub.auth import create_user

    def make(org="Acme", email=None, role="admin"):
        user = create_user(org, email or f"{role}@acme-wecp.example", "correct horse battery", role)
        db.session.commit()
        return user
    return make


@pytest.fixture
def sent():
    """Signals sent during the test, as (name, connection id)."""
    seen = []
    receivers = []
    for name in ("connection_created", "connection_restored", "connection_revoked",
                 "connection_disconnected"):
        def receiver(sender, name=name, **kw):
            seen.append((name, kw["connection"].id))
        receivers.append(receiver)
        getattr(signals, name).connect(receiver)
    yield seen
    for name, receiver in zip(("connection_created", "connection_restored", "connection_revoked",
                               "connection_disconnected"), receivers):
        getattr(signals, name).disconnect(receiver)


def start_connect(client) -> dict:
    response = client.post("/integrations/wecp_lever/connect",
                           data={"csrf_token": csrf_token(client, PAGE)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def consent(sandbox, query: dict, decision="accept") -> dict:
    """Sign in to the sandbox as Olivia and answer the consent page, like a browser."""
    extra = {k: query[k] for k in ("code_challenge", "code_challenge_method")}
    return sandbox.authorize(query["client_id"], query["redirect_uri"], query["scope"],
                             audience=query["audience"], state=query["state"],
                             decision=decision, extra=extra)


def finish(client, answer: dict, **override):
    params = {k: v for k, v in answer.items() if not k.startswith("_")}
    params.update(override)
    return client.get("/integrations/wecp_lever/connect/callback", query_string=params)


def connect(client, sandbox):
    response = finish(client, consent(sandbox, start_connect(client)))
    assert response.status_code == 302 and response.headers["Location"].endswith(PAGE)
    return response


def the_connection() -> Connection | None:
    db.session.expire_all()
    return db.session.scalar(db.select(Connection))


def test_connect_accept_makes_lever_active_with_its_webhook(app, admin_client, sandbox, sent):
    page = admin_client.get(PAGE).get_data(as_text=True)
    assert "Not connected" in page and ">Connect</button>" in page
    query = start_connect(admin_client)
    assert query["audience"] == sandbox.url + "/v1/" and query["prompt"] == "consent"
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert query["redirect_uri"] == CALLBACK and "webhooks:write:admin" in query["scope"].split()

    finish(admin_client, consent(sandbox, query))
    conn = the_connection()
    assert conn.status == Connection.ACTIVE
    assert conn.external_account_name == "acme.example"
    assert conn.data["fallback_user_id"] == OLIVIA  # the admin is no Lever user: first Super Admin
    hooks = sandbox.admin.webhooks("acme")
    assert sorted((h["event"], h["url"]) for h in hooks) == [("candidateArchiveChange", webhook_url(conn)),
                                                            ("candidateStageChange", webhook_url(conn))]
    assert conn.webhook_id == hooks[0]["id"]
    secret = hooks[0]["configuration"]["signatureToken"]
    assert conn.webhook_secret == secret and secret not in conn.webhook_secret_ciphertext
    assert sent == [("connection_created", conn.id)]

    page = admin_client.get(PAGE).get_data(as_text=True)
    assert "Active" in page and "acme.example" in page and "Candidate Stage Change" in page
    assert "Connected by" in page and admin_client.application.config["LEVER_SANDBOX_URL"] in \
        admin_client.get(PAGE).headers["Content-Security-Policy"]
    # Lever's own card (other integrations on the page have their own Connect).
    lever = page.split('id="integration-wecp_lever"', 1)[1].split('id="integration-', 1)[0]
    assert ">Revoke…</a>" in lever and ">Connect</button>" not in lever
    card = admin_client.get("/api/v1/integrations").get_json()["data"][0]
    assert (card["status"], card["account"]) == ("Active", "acme.example")


def test_deny_and_tampered_state_store_nothing(pg_app, pg_client, sandbox):
    answer = consent(sandbox, start_connect(pg_client), decision="deny")
    assert answer["error"] == "access_denied"
    page = pg_client.get(finish(pg_client, answer).headers["Location"]).get_data(as_text=True)
    assert "Access to Lever was denied" in page and the_connection() is None

    answer = consent(sandbox, start_connect(pg_client))
    page = pg_client.get(finish(pg_client, answer, state=answer["state"] + "x")
                         .headers["Location"]).get_data(as_text=True)
    assert "did not match a Connect started here" in page and the_connection() is None
    # The state was spent by the failed attempt: the genuine answer is refused too.
    finish(pg_client, answer)
    assert the_connection() is None


def test_token_endpoint_or_proving_call_failure_stores_nothing(pg_app, pg_client, sandbox):
    sandbox.admin.add_fault(route="^/oauth/token$", error_rate=1, status=503)
    response = finish(pg_client, consent(sandbox, start_connect(pg_client)))
    assert "did not exchange the sign-in" in pg_client.get(response.headers["Location"]).get_data(as_text=True)
    assert the_connection() is None

    sandbox.admin.clear_faults()
    sandbox.admin.add_fault(route="^/v1/users$", error_rate=1, status=500)
    response = finish(pg_client, consent(sandbox, start_connect(pg_client)))
    page = pg_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "a test call with them failed" in page and the_connection() is None


def last_seq(sandbox) -> int:
    log = sandbox.admin.requests_log()
    return log[-1]["seq"] if log else 0


def _expired_connection(sandbox) -> Connection:
    """A stored connection whose access token has expired (its refresh token is live)."""
    from hub.models import Organization

    tokens = sandbox.admin.mint_tokens("acme", CLIENT_ID)
    org = Organization(name="Acme")
    db.session.add(org)
    db.session.flush()
    conn = Connection(organization_id=org.id, plugin_key="wecp_lever", provider="lever",
                      connected_at=utcnow() - timedelta(days=40), setup_completed_at=utcnow())
    _store_tokens(conn, tokens)
    conn.token_expires_at = utcnow() - timedelta(minutes=1)
    db.session.add(conn)
    db.session.commit()
    return conn


WORKER = textwrap.dedent("""
    import json, sys
    from hub import create_app
    from hub.connections import access_token
    app = create_app(json.loads(sys.argv[1]))
    with app.app_context():
        print("ready", flush=True)
        sys.stdin.readline()
        print("token", access_token(sys.argv[2]), flush=True)
""")


def test_four_workers_hitting_an_expired_token_refresh_it_once(pg_app, sandbox):
    conn = _expired_connection(sandbox)
    since = last_seq(sandbox)
    config = {k: pg_app.config[k] for k in ("DATABASE_URL", "REDIS_URL", "HUB_ENCRYPTION_KEYS",
                                            "SECRET_KEY", "LEVER_ENV", "LEVER_SANDBOX_URL",
                                            "LEVER_CLIENT_ID", "LEVER_CLIENT_SECRET", "HUB_BASE_URL")}
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(config), conn.id],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
               for _ in range(4)]
    try:
        for w in workers:
            assert w.stdout.readline().strip() == "ready"
        for w in workers:  # all four go at (nearly) the same instant
            w.stdin.write("go\n")
            w.stdin.flush()
        outputs = [w.communicate(timeout=60)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert all(w.returncode == 0 for w in workers), outputs
    tokens = {line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("token")}
    refreshes = [r for r in sandbox.admin.requests_log(since) if r["path"] == "/oauth/token"]
    assert len(refreshes) == 1 and refreshes[0]["status"] == 200
    stored = json.loads(the_connection().credentials)
    assert tokens == {stored["access_token"]}
    # The stored refresh token is the live one: the chain is unbroken.
    LeverClient(conn.id).list_stages()


def test_revoked_in_lever_shows_revoked_then_reconnect_restores(pg_app, pg_client, sandbox, sent):
    connect(pg_client, sandbox)
    conn = the_connection()
    first_endpoint, first_webhook = conn.endpoint_id, conn.webhook_id
    sandbox.admin.revoke_app("acme", CLIENT_ID)

    with pytest.raises(ConnectionUnusable):
        LeverClient(conn.id).list_users()
    conn = the_connection()
    assert conn.status == Connection.REVOKED and conn.credentials is None
    assert ("connection_revoked", conn.id) in sent
    page = pg_client.get(PAGE).get_data(as_text=True)
    assert "Revoked" in page and ">Reconnect</button>" in page

    connect(pg_client, sandbox)
    conn = the_connection()
    assert conn.status == Connection.ACTIVE and conn.endpoint_id != first_endpoint
    assert sent[-2:] == [("connection_created", conn.id), ("connection_restored", conn.id)]
    # The webhook at the old URL was replaced by one at the new URL.
    hooks = sandbox.admin.webhooks("acme")
    assert [h["url"] for h in hooks] == [webhook_url(conn)] * 2 and first_webhook not in {h["id"] for h in hooks}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Connection)) == 1


def test_refresh_refused_marks_revoked_and_transient_failure_needs_attention(pg_app, sandbox):
    conn = _expired_connection(sandbox)
    sandbox.admin.add_fault(route="^/oauth/token$", error_rate=1, status=502)
    with pytest.raises(TokenRefreshError):
        access_token(conn.id)
    conn = the_connection()
    assert conn.status == Connection.NEEDS_ATTENTION and conn.refresh_failures == 1
    sandbox.admin.clear_faults()
    sandbox.admin.revoke_app("acme", CLIENT_ID)
    with pytest.raises(ConnectionUnusable):
        access_token(conn.id)
    conn = the_connection()
    # Plain words and the next step for the admin's card; the OAuth error code for the audit log.
    assert conn.status == Connection.REVOKED and "invalid_grant" not in conn.revoked_reason
    assert "withdrawn in Lever" in conn.revoked_reason and "reconnect" in conn.revoked_reason
    event = db.session.scalar(db.select(AuditEvent).filter_by(action="connection.revoked"))
    assert event.details["error"].startswith("invalid_grant")


def test_idle_connections_are_refreshed(pg_app, sandbox):
    assert "hub.connections.refresh_idle_connections" in [j.name for j in HUB_PERIODIC_JOBS]
    idle = _expired_connection(sandbox)
    idle.token_expires_at = utcnow() + timedelta(minutes=50)  # valid, but unused for 40 days
    db.session.commit()
    since = last_seq(sandbox)
    assert refresh_idle_connections() == {"refreshed": 1, "revoked": 0, "failed": 0}
    assert refresh_idle_connections() == {"refreshed": 0, "revoked": 0, "failed": 0}
    assert len([r for r in sandbox.admin.requests_log(since) if r["path"] == "/oauth/token"]) == 1


def test_revoke_in_the_hub_deletes_the_webhook_and_forgets_tokens(pg_app, pg_client, sandbox, sent):
    connect(pg_client, sandbox)
    assert len(sandbox.admin.webhooks("acme")) == 2  # stage and archive changes
    response = pg_client.post("/integrations/wecp_lever/revoke",
                              data={"csrf_token": csrf_token(pg_client, PAGE)})
    assert response.status_code == 302
    assert sandbox.admin.webhooks("acme") == []
    conn = the_connection()
    assert conn.status == Connection.NOT_CONNECTED and conn.disconnected_at is not None
    assert conn.credentials_ciphertext is None and conn.webhook_secret_ciphertext is None
    from plugins.wecp_lever.models import Webhook
    assert db.session.scalars(db.select(Webhook)).all() == []  # the archive webhook's secret too
    assert sent[-1] == ("connection_disconnected", conn.id)
    event = db.session.scalar(db.select(AuditEvent).filter_by(action="connection.disconnected"))
    assert event.details["provider_cleanup_error"] is None
    page = pg_client.get(PAGE).get_data(as_text=True)
    assert "Not connected" in page and ">Connect</button>" in page


def test_revoke_in_the_hub_after_lever_revoked_access_forgets_the_signature_tokens(pg_app, pg_client, sandbox):
    from plugins.wecp_lever.models import Webhook

    connect(pg_client, sandbox)
    conn = the_connection()
    assert db.session.scalars(db.select(Webhook)).all() != []
    sandbox.admin.revoke_app("acme", CLIENT_ID)
    with pytest.raises(ConnectionUnusable):
        LeverClient(conn.id).list_users()
    response = pg_client.post("/integrations/wecp_lever/revoke",
                              data={"csrf_token": csrf_token(pg_client, PAGE)})
    assert response.status_code == 302
    db.session.expire_all()
    # Lever's webhooks could not be deleted (no access), but their secrets are no longer kept.
    assert db.session.scalars(db.select(Webhook)).all() == []
    assert the_connection().webhook_secret_ciphertext is None


def test_no_token_or_signature_token_is_stored_in_clear(pg_app, pg_client, sandbox):
    connect(pg_client, sandbox)
    conn = the_connection()
    conn.token_expires_at = utcnow()  # force one refresh so rotated tokens are covered too
    db.session.commit()
    old = json.loads(conn.credentials)
    access_token(conn.id)
    new = json.loads(the_connection().credentials)
    from plugins.wecp_lever.models import Webhook
    [archive_hook] = db.session.scalars(db.select(Webhook)).all()
    secrets = {old["access_token"], old["refresh_token"], new["access_token"],
               new["refresh_token"], the_connection().webhook_secret, archive_hook.secret, CLIENT_SECRET}
    found = []
    # The metadata also holds the tables of plugins another test imported; this app has only its own.
    present = set(sa.inspect(db.engine).get_table_names())
    for table in db.metadata.sorted_tables:
        if table.name not in present:
            continue
        for column in table.columns:
            if isinstance(column.type, (sa.String, sa.Text, sa.JSON)):
                for (value,) in db.session.execute(sa.select(sa.cast(column, sa.Text))):
                    found += [(table.name, column.name) for s in secrets if value and s in value]
    assert found == []


def test_members_see_status_but_no_buttons_and_cannot_connect_or_revoke(app, client, make_user):
    member = make_user(role="member")
    sign_in(client, member.email)
    page = client.get(PAGE).get_data(as_text=True)
    assert "Not connected" in page and "<button" not in page.split("<main>")[1]
    token = csrf_token(client, PAGE)
    assert client.post("/integrations/wecp_lever/connect", data={"csrf_token": token}).status_code == 403
    assert client.post("/integrations/wecp_lever/revoke", data={"csrf_token": token}).status_code == 403
    assert client.get("/integrations/wecp_lever/connect/callback?state=x&code=y").status_code == 403
    assert client.post("/integrations/nope/connect", data={"csrf_token": token}).status_code == 403


def test_unknown_plugin_is_404_for_admins(admin_client):
    token = csrf_token(admin_client, PAGE)
    assert admin_client.post("/integrations/nope/connect", data={"csrf_token": token}).status_code == 404


def test_revoke_asks_first_and_says_what_is_in_flight(pg_app, pg_client, sandbox, sent):
    """Before Revoke the admin reads what it does, what is open, and where Lever lists WeCP."""
    from hub.assessments import services
    from hub.mail import OutboundEmail
    from plugins.wecp_lever.models import Note
    from tests.hub.assessments.conftest import SAMPLE

    connect(pg_client, sandbox)
    conn = the_connection()
    test = services.save_test(conn.organization_id, dict(SAMPLE))
    db.session.commit()
    services.create_invitation(test.id, name="Ada", email="ada@example.com", source="wecp_lever",
                               source_ref="opp-1", idempotency_key="inflight:1")
    db.session.add(Note(organization_id=conn.organization_id, connection_id=conn.id, key="inflight:note",
                        result_id=None, opportunity_id="opp-1", status="paused"))
    db.session.commit()
    assert db.session.scalar(db.select(OutboundEmail.id)) is not None
    page = pg_client.get("/integrations/wecp_lever/revoke").get_data(as_text=True)
    assert "Revoke Lever?" in page and "1 open invitation (not yet completed)" in page
    assert "1 × Lever note waiting to be done" in page
    assert "Settings › Integrations and API › Authorized Apps" in page
    assert the_connection().usable  # asking changed nothing
    response = pg_client.post("/integrations/wecp_lever/revoke", follow_redirects=True,
                              data={"csrf_token": csrf_token(pg_client, PAGE)})
    assert "Authorized Apps" in response.get_data(as_text=True)
    assert the_connection().status == Connection.NOT_CONNECTED



def test_the_card_says_when_to_reconnect_and_warns_a_month_ahead(pg_app, pg_client, sandbox, sent):
    """docs/providers/lever.md#oauth: Lever's refresh tokens live about a year from the consent."""
    connect(pg_client, sandbox)
    conn = the_connection()
    page = pg_client.get(PAGE).get_data(as_text=True)
    renew_by = (conn.connected_at + timedelta(days=365)).strftime("%Y-%m-%d")
    assert "Reconnect by</dt><dd class=\"renew-by\"><time" in page and renew_by in page
    assert "authorization of WeCP lapses" not in page
    conn.connected_at = utcnow() - timedelta(days=340)
    db.session.commit()
    page = pg_client.get(PAGE).get_data(as_text=True)
    assert "Lever's authorization of WeCP lapses on" in page and "a Lever Super Admin accepts again" in page
    assert ">Reconnect</button>" in page
    card = next(c for c in pg_client.get("/api/v1/integrations").json["data"] if c["key"] == "wecp_lever")
    assert card["renew_by"].startswith((conn.connected_at + timedelta(days=365)).strftime("%Y-%m-%d"))


def test_admins_are_emailed_a_month_and_a_week_before_the_authorization_lapses(pg_app, pg_client, sandbox):
    """The card warns, but nobody may look at it: each admin gets one email 30 days ahead and
    one 7 days ahead, however often the daily job runs; a reconnect starts afresh."""
    from hub.connections import HUB_PERIODIC_JOBS, remind_renewals
    from hub.mail import OutboundEmail

    def reminders():
        db.session.expire_all()
        return db.session.scalars(db.select(OutboundEmail).where(
            OutboundEmail.idempotency_key.like("renewal:%")).order_by(OutboundEmail.id)).all()
    assert "hub.connections.remind_renewals" in [j.name for j in HUB_PERIODIC_JOBS]
    connect(pg_client, sandbox)
    conn = the_connection()
    remind_renewals()
    assert reminders() == []  # a year ahead: nothing to say
    conn.connected_at = utcnow() - timedelta(days=340)
    db.session.commit()
    remind_renewals()
    remind_renewals()
    [month] = reminders()
    assert month.to == "admin@acme-wecp.example" and month.subject.startswith("Reconnect Lever to WeCP by")
    assert "Reconnect" in month.text and "/settings/integrations" in month.text
    conn = the_connection()
    conn.connected_at = utcnow() - timedelta(days=360)
    db.session.commit()
    remind_renewals()
    assert len(reminders()) == 2
