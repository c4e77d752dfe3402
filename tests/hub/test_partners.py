"""The second integration shape (#41, items 1 and 2): a key WeCP issues, and partner endpoints the
provider calls with it, through the tests' ``partner_example`` plugin."""
from __future__ import annotations

import base64
import dataclasses
import re
from datetime import timedelta

import pytest

from hub.extensions import db, get_redis
from hub.models import AuditEvent, Connection, PartnerKey, utcnow
from hub.outbox import kind_of, run
from hub.registry import get_plugin
from tests.conftest import csrf_token, sign_in
from tests.hub.assessments.conftest import make_test
from tests.hub.conftest import hub_test_plugins
from tests.plugins.partner_example.work import Push, push

PAGE = "/settings/integrations"
BASE = "/partners/partner_example"


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": hub_test_plugins(), "HUB_PARTNER_CALLS_PER_MINUTE": 1000}


def basic(key: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def issue(client, user) -> str:
    """Connect as ``user`` (an admin): the key shown once on the answer."""
    sign_in(client, user.email)
    answer = client.post("/integrations/partner_example/connect", data={"csrf_token": csrf_token(client, PAGE)})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "no-store"
    return re.search(r'id="partner-key" class="secret" readonly value="([^"]+)"', answer.get_data(as_text=True)).group(1)


@pytest.fixture
def org_a(app, make_user):
    admin = make_user(org="Acme")
    key = issue(app.test_client(), admin)
    return admin, key


@pytest.fixture
def org_b(app, make_user):
    admin = make_user(org="Globex")
    key = issue(app.test_client(), admin)
    return admin, key


def test_connect_issues_a_key_shown_once_and_stored_hashed(app, make_user):
    admin = make_user(org="Acme")
    browser = app.test_client()
    key = issue(browser, admin)
    assert key.startswith(PartnerKey.PREFIX) and len(key) < 171  # under the strictest provider limit known
    row = db.session.scalar(db.select(PartnerKey))
    assert row.key_hash == PartnerKey.hash(key) and row.hint == key[-4:]
    conn = db.session.get(Connection, row.connection_id)
    assert conn.status == Connection.ACTIVE and conn.organization_id == admin.organization_id
    # Nowhere in clear: not in the database's rows, not on the card, not in the audit log.
    stored = " ".join(str(v) for r in db.session.scalars(db.select(AuditEvent)) for v in (r.details, r.target))
    assert key not in stored and key not in (conn.credentials or "")
    card = browser.get(PAGE).get_data(as_text=True)
    assert key not in card and f"…{row.hint}" in card and "Rotate key" in card
    assert "Partner ATS called WeCP with its key" in card


def test_the_provider_calls_with_its_key_and_reaches_its_organization_only(app, org_a, org_b):
    admin_a, key_a = org_a
    admin_b, key_b = org_b
    make_test(admin_a.organization_id, title="Acme's test")
    make_test(admin_b.organization_id, title="Globex's test")
    caller = app.test_client()
    answer = caller.get(f"{BASE}/tests", headers=basic(key_a))
    assert answer.status_code == 200 and [t["name"] for t in answer.json] == ["Acme's test"]
    assert "Set-Cookie" not in answer.headers  # no session is made for a partner call
    assert [t["name"] for t in caller.get(f"{BASE}/tests", headers=basic(key_b)).json] == ["Globex's test"]
    # The first call ticks the card's step.
    conn = db.session.scalar(db.select(Connection).filter_by(organization_id=admin_a.organization_id))
    assert conn.last_used_at is not None


@pytest.mark.parametrize("headers", [
    {}, basic("wcp_pk_not-a-key"), basic(""), {"Authorization": "Basic !!!"},
    {"Authorization": "Bearer placeholder"}, {"Authorization": "Basic " + base64.b64encode(b"x" * 300).decode()},
])
def test_a_call_without_a_valid_key_is_refused_as_json(app, org_a, headers):
    _, key = org_a
    if headers.get("Authorization") == "Bearer placeholder":
        headers = {"Authorization": f"Bearer {key}"}  # the right key in the wrong scheme
    answer = app.test_client().get(f"{BASE}/tests", headers=headers)
    assert answer.status_code == 401
    assert answer.json == {"errors": [{"message": "invalid or missing partner key"}], "status": 401}
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert db.session.scalar(db.select(AuditEvent).filter_by(action="partner.refused")) is not None


def test_a_send_is_stored_once_however_often_the_provider_retries(app, org_a, org_b):
    _, key_a = org_a
    _, key_b = org_b
    caller = app.test_client()
    first = caller.post(f"{BASE}/send", json={"ref": "r-1", "email": "ada@example.com"}, headers=basic(key_a))
    again = caller.post(f"{BASE}/send", json={"ref": "r-1", "email": "ada@example.com"}, headers=basic(key_a))
    assert (first.status_code, first.json["new"]) == (201, True)  # no CSRF token, no session: the key is enough
    assert (again.status_code, again.json) == (200, {"id": first.json["id"], "new": False})
    assert db.session.scalar(db.select(db.func.count()).select_from(Push)) == 1
    run(kind_of(push), first.json["id"], here=True)
    run(kind_of(push), first.json["id"], here=True)
    assert int(get_redis().get("partner:push:effects")) == 1
    assert caller.get(f"{BASE}/status?id={first.json['id']}", headers=basic(key_a)).json["status"] == "done"
    # Another organization's key never reaches this one's row.
    other = caller.get(f"{BASE}/status?id={first.json['id']}", headers=basic(key_b))
    assert other.status_code == 404 and other.json["errors"][0]["message"] == "no such send"
    audit = db.session.scalar(db.select(AuditEvent).filter_by(action="partner.call"))
    assert audit.details["endpoint"] == "partner_example_partner.send" and audit.details["status"] == 201


def test_errors_on_partner_routes_are_the_providers_json(app, org_a):
    _, key = org_a
    caller = app.test_client()
    bad = caller.post(f"{BASE}/send", data="not json", headers=basic(key), content_type="application/json")
    assert bad.status_code == 400 and bad.json["errors"][0]["message"].startswith("expected")
    missing = caller.get(f"{BASE}/nowhere", headers=basic(key))
    assert missing.status_code == 404 and missing.is_json
    wrong_method = caller.delete(f"{BASE}/tests", headers=basic(key))
    assert wrong_method.status_code == 405 and wrong_method.is_json


def test_a_body_over_the_limit_is_refused_before_it_is_read(app, org_a):
    _, key = org_a
    app.config["HUB_PARTNER_MAX_BYTES"] = 100
    answer = app.test_client().post(f"{BASE}/send", json={"ref": "r", "email": "x" * 200}, headers=basic(key))
    assert answer.status_code == 413 and answer.json["status"] == 413
    assert db.session.scalar(db.select(db.func.count()).select_from(Push)) == 0


def test_each_key_has_its_own_rate_limit(app, org_a, org_b):
    _, key_a = org_a
    _, key_b = org_b
    app.config["HUB_PARTNER_CALLS_PER_MINUTE"] = 2
    caller = app.test_client()
    assert [caller.get(f"{BASE}/tests", headers=basic(key_a)).status_code for _ in range(3)] == [200, 200, 429]
    limited = caller.get(f"{BASE}/tests", headers=basic(key_a))
    assert limited.is_json and int(limited.headers["Retry-After"]) >= 1
    assert caller.get(f"{BASE}/tests", headers=basic(key_b)).status_code == 200  # another key, its own budget


def test_a_provider_may_set_its_keys_own_limit(app, org_a, monkeypatch):
    """A provider whose bulk actions call in bursts declares its keys' rate; others keep the hub's."""
    _, key_a = org_a
    app.config["HUB_PARTNER_CALLS_PER_MINUTE"] = 1000
    plugin = get_plugin("partner_example")
    bursty = dataclasses.replace(plugin.providers[0], calls_per_minute=2)
    monkeypatch.setattr(plugin, "providers", (bursty, *plugin.providers[1:]))
    caller = app.test_client()
    assert [caller.get(f"{BASE}/tests", headers=basic(key_a)).status_code for _ in range(3)] == [200, 200, 429]


def test_rotating_keeps_the_old_key_for_the_overlap_then_refuses_it(app, org_a):
    admin, old = org_a
    browser = app.test_client()
    sign_in(browser, admin.email)
    answer = browser.post("/integrations/partner_example/keys/rotate", data={"csrf_token": csrf_token(browser, PAGE)})
    new = re.search(r'readonly value="([^"]+)"', answer.get_data(as_text=True)).group(1)
    assert new != old and "keeps working until" in answer.get_data(as_text=True)
    caller = app.test_client()
    assert caller.get(f"{BASE}/tests", headers=basic(old)).status_code == 200  # within the overlap
    ending = db.session.scalar(db.select(PartnerKey).filter_by(key_hash=PartnerKey.hash(old)))
    assert timedelta(days=6) < ending.expires_at - utcnow() <= timedelta(days=7)
    ending.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert caller.get(f"{BASE}/tests", headers=basic(old)).status_code == 401
    assert caller.get(f"{BASE}/tests", headers=basic(new)).status_code == 200


def test_revoking_a_key_or_the_connection_refuses_at_once(app, org_a):
    admin, key = org_a
    browser = app.test_client()
    sign_in(browser, admin.email)
    token = csrf_token(browser, PAGE)
    answer = browser.post("/integrations/partner_example/keys/rotate", data={"csrf_token": token})
    new = re.search(r'readonly value="([^"]+)"', answer.get_data(as_text=True)).group(1)
    row = db.session.scalar(db.select(PartnerKey).filter_by(key_hash=PartnerKey.hash(key)))
    browser.post(f"/integrations/partner_example/keys/{row.id}/revoke", data={"csrf_token": token})
    caller = app.test_client()
    assert caller.get(f"{BASE}/tests", headers=basic(key)).status_code == 401
    assert caller.get(f"{BASE}/tests", headers=basic(new)).status_code == 200
    browser.post("/integrations/partner_example/revoke", data={"csrf_token": token})
    assert caller.get(f"{BASE}/tests", headers=basic(new)).status_code == 401
    card = browser.get(PAGE).get_data(as_text=True)
    assert 'id="integration-partner_example" data-status="Not connected"' in card
    # Connected again: a new key, which the provider has not used yet (the card's step says so).
    again = browser.post("/integrations/partner_example/connect", data={"csrf_token": token})
    assert again.status_code == 200 and new not in again.get_data(as_text=True)
    card = browser.get(PAGE).get_data(as_text=True)
    assert re.search(r'class="step todo">.{0,200}Partner ATS called WeCP with its key', card, re.S)


def test_calls_with_a_replaced_key_are_told_on_the_card_until_the_provider_has_the_new_one(app, org_a, org_b):
    """The provider still calls with a key the admin revoked (or whose overlap ended): refused,
    counted on that key, and said on the card with the key's ending and what to do. A key nobody
    issued, or another organization's working key, adds nothing to this card."""
    admin, old = org_a
    browser = app.test_client()
    sign_in(browser, admin.email)
    token = csrf_token(browser, PAGE)

    def rotate() -> str:
        answer = browser.post("/integrations/partner_example/keys/rotate", data={"csrf_token": token})
        return re.search(r'readonly value="([^"]+)"', answer.get_data(as_text=True)).group(1)

    new = rotate()
    row = db.session.scalar(db.select(PartnerKey).filter_by(key_hash=PartnerKey.hash(old)))
    browser.post(f"/integrations/partner_example/keys/{row.id}/revoke", data={"csrf_token": token})
    assert "still calls WeCP" not in browser.get(PAGE).get_data(as_text=True)
    caller = app.test_client()
    for _ in range(3):
        assert caller.get(f"{BASE}/tests", headers=basic(old)).status_code == 401
    assert caller.get(f"{BASE}/tests", headers=basic(PartnerKey.PREFIX + "never-issued")).status_code == 401
    assert caller.get(f"{BASE}/tests", headers=basic(org_b[1])).status_code == 200
    card = browser.get(PAGE).get_data(as_text=True)
    assert re.search(rf"Partner ATS still calls WeCP with the key ending …{row.hint}, which you revoked on "
                     rf"[0-9-]+: 3 calls refused", card), card
    assert "Give Partner ATS the current key" in card
    refused = db.session.scalars(db.select(AuditEvent).filter_by(action="partner.refused")).all()
    assert [e.organization_id for e in refused if e.details.get("key_id") == row.id] == [admin.organization_id] * 3
    # A key whose overlap ended after a rotation is said as such, in the API's card too.
    rotate()
    ended = db.session.scalar(db.select(PartnerKey).filter_by(key_hash=PartnerKey.hash(new)))
    ended.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert caller.get(f"{BASE}/tests", headers=basic(new)).status_code == 401
    alerts = [a["message"] for c in browser.get("/api/v1/integrations").json["data"] for a in c["alerts"]]
    assert any(f"key ending …{ended.hint}, which was replaced and stopped working on" in a
               and "1 call refused" in a for a in alerts), alerts
    # Org B's card says nothing of Org A's old keys.
    other = app.test_client()
    sign_in(other, org_b[0].email)
    assert "still calls WeCP" not in other.get(PAGE).get_data(as_text=True)


def test_another_organizations_admin_cannot_rotate_or_revoke_this_ones_keys(app, org_a, org_b):
    admin_a, key_a = org_a
    admin_b, _ = org_b
    row = db.session.scalar(db.select(PartnerKey).filter_by(key_hash=PartnerKey.hash(key_a)))
    browser = app.test_client()
    sign_in(browser, admin_b.email)
    token = csrf_token(browser, PAGE)
    assert browser.post(f"/integrations/partner_example/keys/{row.id}/revoke", data={"csrf_token": token}).status_code == 404
    assert app.test_client().get(f"{BASE}/tests", headers=basic(key_a)).status_code == 200


def test_a_pasted_key_is_checked_before_it_is_saved_and_kept_encrypted(app, make_user):
    from hub.connections import access_token

    admin = make_user(org="Acme")
    browser = app.test_client()
    sign_in(browser, admin.email)
    form = browser.get("/integrations/partner_example/connect?provider=api")
    assert form.status_code == 200 and "Create it under Settings › API keys" in form.get_data(as_text=True)
    token = csrf_token(browser, "/integrations/partner_example/connect?provider=api")
    url = "/integrations/partner_example/connect?provider=api"
    refused = browser.post(url, data={"csrf_token": token, "key": "bad-key-123", "subdomain": "acme"})
    assert refused.status_code == 400 and "did not accept this API key" in refused.get_data(as_text=True)
    assert "bad-key-123" not in refused.get_data(as_text=True)  # never shown back
    assert db.session.scalar(db.select(Connection).filter_by(provider="api")) is None  # nothing saved
    bad_subdomain = browser.post(url, data={"csrf_token": token, "key": "good-key", "subdomain": "acme.evil/x"})
    assert bad_subdomain.status_code == 400 and db.session.scalar(db.select(Connection)) is None
    saved = browser.post(url, data={"csrf_token": token, "key": "good-key-123", "subdomain": "Acme"})
    assert saved.status_code == 302
    conn = db.session.scalar(db.select(Connection).filter_by(provider="api"))
    assert conn.status == Connection.ACTIVE and conn.data["subdomain"] == "acme"
    assert conn.external_account_name == "acme workspace"
    assert "good-key-123" not in conn.credentials_ciphertext and access_token(conn.id) == "good-key-123"
    card = browser.get(PAGE).get_data(as_text=True)
    # Two providers of two kinds on one card: the key is pasted, no key issued yet.
    assert 'data-status="Partly connected"' in card and "acme workspace" in card
    assert "Paste a new key" in card and "Connect issues a key for Partner ATS" in card


def test_a_pasted_key_the_provider_refuses_revokes_the_connection(app, make_user):
    from hub.connections import access_token
    from hub.plugin import ConnectionUnusable

    admin = make_user(org="Acme")
    browser = app.test_client()
    sign_in(browser, admin.email)
    url = "/integrations/partner_example/connect?provider=api"
    browser.post(url, data={"csrf_token": csrf_token(browser, url), "key": "good-key-123", "subdomain": "acme"})
    conn = db.session.scalar(db.select(Connection).filter_by(provider="api"))
    with pytest.raises(ConnectionUnusable):
        access_token(conn.id, rejected="good-key-123")
    db.session.refresh(conn)
    assert conn.status == Connection.REVOKED and "paste a new key" in conn.revoked_reason
    assert conn.credentials_ciphertext is None
    card = browser.get(PAGE).get_data(as_text=True)
    assert "Partner ATS API no longer accepts this connection" in card and "Paste a new key" in card


def test_doctor_speaks_of_each_provider_by_its_kind(app):
    output = app.test_cli_runner().invoke(args=["doctor"]).output
    partner = next(line for line in output.splitlines() if "partner_example: Partner ATS " in line)
    assert partner.startswith("ok") and "http://hub.test/partners/partner_example/…" in partner
    pasted = next(line for line in output.splitlines() if "partner_example: Partner ATS API" in line)
    assert pasted.startswith("ok") and "pastes its own key" in pasted


def test_a_key_of_another_plugin_is_refused(app, org_a):
    """A key names one connection of one plugin: presented to another plugin's endpoints, it is
    no key (the tests' partner example is the only plugin with endpoints, so its own connection
    is moved to another plugin here)."""
    _, key = org_a
    row = db.session.scalar(db.select(PartnerKey).filter_by(key_hash=PartnerKey.hash(key)))
    conn = db.session.get(Connection, row.connection_id)
    conn.plugin_key = "tiny_example"
    db.session.commit()
    assert app.test_client().get(f"{BASE}/tests", headers=basic(key)).status_code == 401
