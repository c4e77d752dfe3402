"""Harvest end to end against the Greenhouse sandbox (sandboxes/greenhouse/harvest.py): a Site Admin
authorizes WeCP, the admin picks a stage from Greenhouse's own lists, a candidate who passes gets
the note and the move, Greenhouse's rate limit gives the work back instead of holding a worker,
and a revoke in Greenhouse shows up as a revoked connection."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from hub.extensions import db, get_redis
from hub.jobs import Defer
from hub.models import Connection
from hub.plugin import ConnectionUnusable
from plugins.wecp_greenhouse import harvest
from plugins.wecp_greenhouse.models import HarvestWrite
from sandboxes.greenhouse.app import HARVEST_CLIENT_ID, HARVEST_CLIENT_SECRET, TAKE_HOME_PATH
from tests.conftest import csrf_token

from .conftest import BASE
from .test_harvest import attempt
from .test_partner_api import complete, interviews


@pytest.fixture(scope="module")
def greenhouse():
    from sandboxes.greenhouse.testing import start_sandbox

    server = start_sandbox()
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres_db):
    return postgres_db.url  # one database is enough here: the subject is the HTTP conversation


@pytest.fixture
def app_config(greenhouse):
    greenhouse.admin.reset()
    return {"HUB_PLUGINS": ["plugins.wecp_greenhouse"], "GREENHOUSE_ENV": "local",
            "GREENHOUSE_SANDBOX_URL": greenhouse.url, "GREENHOUSE_HARVEST_CLIENT_ID": HARVEST_CLIENT_ID,
            "GREENHOUSE_HARVEST_CLIENT_SECRET": HARVEST_CLIENT_SECRET, "HUB_PARTNER_CALLS_PER_MINUTE": 1000}


def connect(browser, greenhouse) -> None:
    """Connect on the card → the sandbox's consent page → Authorize → back to WeCP's callback."""
    answer = browser.post("/integrations/wecp_greenhouse/connect", data={
        "csrf_token": csrf_token(browser, "/settings/integrations"), "provider": "harvest"})
    consent = answer.headers["Location"]
    assert consent.startswith(f"{greenhouse.url}/oauth/authorize?")
    assert "Authorize WeCP to use Harvest" in requests.get(consent, timeout=10).text
    params = {k: v[0] for k, v in parse_qs(urlsplit(consent).query).items()}
    back = requests.post(f"{greenhouse.url}/oauth/authorize", data={**params, "decision": "accept"},
                         allow_redirects=False, timeout=10).headers["Location"]
    parts = urlsplit(back)
    done = browser.get(f"{parts.path}?{parts.query}", follow_redirects=True)
    assert "Greenhouse Harvest is connected" in done.get_data(as_text=True)


def test_a_pass_is_noted_and_moved_in_greenhouse(app, hogwarts, greenhouse):
    connect(hogwarts.browser, greenhouse)
    job = greenhouse.admin.job_id("Backend Engineer")
    stages = {s["name"]: s["id"] for s in next(j for j in greenhouse.admin.state()["jobs"] if j["id"] == job)["stages"]}
    # The admin picks Onsite from Greenhouse's lists, read through Harvest.
    page = hogwarts.browser.get("/integrations/wecp_greenhouse/harvest").get_data(as_text=True)
    assert "Backend Engineer" in page and "Data Analyst" in page
    hogwarts.browser.post("/integrations/wecp_greenhouse/harvest", data={
        "csrf_token": csrf_token(hogwarts.browser, "/integrations/wecp_greenhouse/harvest"),
        f"job-{job}": str(stages["Onsite"]), "notes": "on"})
    added = greenhouse.admin.add_candidate(job, "Ada", "Lovelace", "ada@example.com")
    greenhouse.admin.move(added["application_id"], "Take Home Test")
    profile = f"{greenhouse.url}/people/{added['candidate_id']}?application_id={added['application_id']}"
    sent = app.test_client().post(f"{BASE}/send_test", headers=hogwarts.auth, json={
        "partner_test_id": str(hogwarts.test.id), "url": f"{greenhouse.url}{TAKE_HOME_PATH}1",
        "candidate": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                      "greenhouse_profile_url": profile}})
    assert sent.status_code == 200
    from hub.mail import OutboundEmail

    assert "for Backend Engineer" in db.session.scalar(db.select(OutboundEmail.subject))
    complete(next(iter(interviews())))
    note, move = db.session.scalars(db.select(HarvestWrite).order_by(HarvestWrite.id)).all()

    # Greenhouse's budget: two calls a window. The note spends one, the move's read the other;
    # its next read is then not made at all: the job is given back until the window resets.
    greenhouse.admin.set_harvest_rate_limit(2)
    assert attempt(note.id).code == "noted"
    assert attempt(move.id) == "deferred"
    assert harvest.paused_for(move.connection_id) > 0
    assert db.session.get(HarvestWrite, move.id).status == "pending"
    greenhouse.admin.set_harvest_rate_limit(50)
    get_redis().delete(f"wecp_greenhouse:harvest:{move.connection_id}:paused_until")
    assert attempt(move.id).code == "moved"

    seen = greenhouse.admin.harvest()
    (written,) = seen["notes"]
    assert written["candidate_id"] == added["candidate_id"] and "View a detailed report on WeCP: http" in written["body"]
    assert seen["moves"] == [{"application_id": added["application_id"], "to": "Onsite", "at": seen["moves"][0]["at"]}]
    application = next(a for a in greenhouse.admin.state()["applications"] if a["id"] == added["application_id"])
    assert application["stage_id"] == stages["Onsite"]
    person = requests.get(profile, timeout=10).text
    assert "View a detailed report on WeCP" in person and "Onsite" in person


def test_a_revoke_in_greenhouse_shows_as_a_revoked_connection(app, hogwarts, greenhouse):
    connect(hogwarts.browser, greenhouse)
    conn = db.session.scalar(db.select(Connection).filter_by(provider="harvest"))
    harvest.check(conn.id)
    greenhouse.admin.revoke_harvest()
    with pytest.raises((ConnectionUnusable, Defer)):
        harvest.check(conn.id)
    db.session.expire_all()
    assert db.session.get(Connection, conn.id).status == "Revoked"
    card = hogwarts.browser.get("/settings/integrations").get_data(as_text=True)
    assert "Revoked" in card


def test_greenhouse_down_then_back_the_note_is_written_once(app, hogwarts, greenhouse, monkeypatch):
    connect(hogwarts.browser, greenhouse)
    seeded = greenhouse.admin.state()["applications"][0]
    profile = f"{greenhouse.url}/people/{seeded['candidate_id']}?application_id={seeded['id']}"
    sent = app.test_client().post(f"{BASE}/send_test", headers=hogwarts.auth, json={
        "partner_test_id": str(hogwarts.test.id), "url": f"{greenhouse.url}{TAKE_HOME_PATH}1",
        "candidate": {"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com",
                      "greenhouse_profile_url": profile}})
    assert sent.status_code == 200
    complete(next(iter(interviews())))
    (note,) = db.session.scalars(db.select(HarvestWrite)).all()
    greenhouse.admin.add_fault("harvest", status=503, count=1)
    assert attempt(note.id, monkeypatch, retries_left=2) == "WorkFailed"  # tried again later
    assert db.session.get(HarvestWrite, note.id).status == "pending"
    assert attempt(note.id, monkeypatch, retries_left=1).code in ("noted", "already_done")
    assert len(greenhouse.admin.harvest()["notes"]) == 1
