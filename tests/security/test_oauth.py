"""OAuth hygiene, against the Lever sandbox: state bound to the browser and used once, PKCE S256."""
from __future__ import annotations

import pytest

from hub.extensions import db
from hub.models import Connection
from tests.security.conftest import consent, finish, needs_plugin, start_connect

pytestmark = needs_plugin("wecp_lever")


@pytest.fixture
def app_config(sandbox):
    return {"LEVER_SANDBOX_URL": sandbox.url, "HUB_QUEUE_MODE": "inline", "LEVER_MAX_RETRIES": 0}


def connections() -> list[Connection]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(Connection)))


def test_oauth_callback_needs_the_state_of_a_connect_started_in_this_browser(app, lever, browser, make_user):
    """An attacker who connects their own Lever account and sends the callback link to our
    admin (login CSRF) gets nothing stored: the admin's browser started no such Connect."""
    attacker = browser(make_user(org="Evil Co", role="admin", email="evil@evil.example"))
    victim = browser(make_user(org="Acme", role="admin", email="admin@acme.example"))
    answer = consent(lever, start_connect(attacker))
    response = finish(victim, answer)
    assert response.status_code == 302
    assert "did not match a Connect started here" in victim.get(response.headers["Location"]).get_data(as_text=True)
    # Even with a Connect of its own pending, the victim's browser refuses someone else's state.
    start_connect(victim)
    finish(victim, answer)
    assert connections() == []


def test_oauth_state_is_used_once_and_cannot_be_altered(app, lever, browser, make_user):
    admin = browser(make_user(role="admin"))
    answer = consent(lever, start_connect(admin))
    finish(admin, dict(answer, state=answer["state"] + "x"))
    finish(admin, answer)  # the tampered attempt spent the state: the genuine answer is refused
    assert connections() == []
    answer = consent(lever, start_connect(admin))
    finish(admin, dict(answer, state=""))
    assert connections() == []


def test_oauth_uses_pkce_s256(app, lever, browser, make_user):
    admin = browser(make_user(role="admin"))
    query = start_connect(admin)
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) >= 43
    assert len(query["state"]) >= 32
    finish(admin, consent(lever, query))
    [conn] = connections()
    assert conn.status == Connection.ACTIVE
    # The sandbox, like Lever's Auth0, exchanged the code only with the matching verifier.
    exchange = [r for r in lever.admin.requests_log() if r["path"] == "/oauth/token"]
    assert exchange and exchange[0]["status"] == 200


def test_a_stolen_code_without_the_verifier_is_worthless(app, lever, browser, make_user):
    """The code alone (e.g. leaked through a log or a referrer) gets no tokens: the verifier
    lives only in the admin's signed session."""
    import requests

    admin = browser(make_user(role="admin"))
    answer = consent(lever, start_connect(admin))
    stolen = requests.post(lever.url + "/oauth/token", timeout=10, data={
        "grant_type": "authorization_code", "code": answer["code"], "client_id": "wecp-hub-test",
        "client_secret": "test-client-secret",
        "redirect_uri": "http://hub.test/integrations/wecp_lever/connect/callback"})
    assert stolen.status_code in (400, 401, 403) and "access_token" not in stolen.text
