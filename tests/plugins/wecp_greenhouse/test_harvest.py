"""Harvest v3, optional per customer (docs/providers/greenhouse.md#harvest), with ``responses``
standing in for Greenhouse: every call WeCP makes there (the token exchange and refresh, the
check, jobs and stages, the application, the note, the move), its rate limit, its errors."""
from __future__ import annotations

import base64
import json
import re
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from hub.activity import ActivityLine
from hub.extensions import db
from hub.jobs import Defer
from hub.models import Connection, utcnow
from hub.outbox import kind_of
from plugins.wecp_greenhouse import harvest
from plugins.wecp_greenhouse.followup import write
from plugins.wecp_greenhouse.models import HarvestWrite, Interview
from tests.conftest import csrf_token, sign_in

from .conftest import BASE, GREENHOUSE, send_body
from .test_partner_api import complete, interviews
from .test_push import RqJob

KIND = kind_of(write)
JOB, REVIEW, TAKE_HOME, ONSITE = 4000, 401, 402, 403
#: The candidate and application in ``send_body``'s profile link.
CANDIDATE, APPLICATION = 17681532, 26234709
STAGES = [{"id": REVIEW, "name": "Application Review", "job_id": JOB, "priority": 0},
          {"id": TAKE_HOME, "name": "Take Home Test", "job_id": JOB, "priority": 1},
          {"id": ONSITE, "name": "Onsite", "job_id": JOB, "priority": 2}]


def connect_harvest(customer, **data) -> Connection:
    conn = Connection(organization_id=customer.admin.organization_id, plugin_key="wecp_greenhouse",
                      provider="harvest", connected_at=utcnow(), setup_completed_at=utcnow(),
                      token_expires_at=utcnow() + timedelta(hours=1), data=data)
    conn.credentials = json.dumps({"access_token": "harvest-access", "refresh_token": "harvest-refresh"})
    db.session.add(conn)
    db.session.commit()
    return conn


ONSITE_PICKED = {"move_to": {str(JOB): {"stage_id": ONSITE, "stage": "Onsite", "job": "Backend Engineer"}}}


def completed(app, customer, right: bool = True) -> list[HarvestWrite]:
    """Greenhouse sends the test (WeCP asks Harvest which job it is for), the candidate completes it."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as greenhouse:
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/applications/{APPLICATION}", json=application())
        app.test_client().post(f"{BASE}/send_test", json=send_body(customer.test.id), headers=customer.auth)
    complete(next(iter(interviews())), right=right)
    return db.session.scalars(db.select(HarvestWrite).order_by(HarvestWrite.id)).all()


def attempt(row_id, monkeypatch=None, retries_left: int = 3):
    """One run of the row's job, committed as its job commits."""
    if monkeypatch is not None:
        monkeypatch.setattr("hub.outbox.get_current_job", lambda: RqJob(row_id, retries_left))
    try:
        outcome = hub_run(row_id)
        db.session.commit()
        return outcome
    except Defer:
        return "deferred"
    except Exception as exc:
        return type(exc).__name__
    finally:
        db.session.rollback()
        db.session.expire_all()


def hub_run(row_id):
    from hub.outbox import run

    return run(KIND, row_id)


def lines(status: str) -> list[str]:
    return [line.message for line in db.session.scalars(db.select(ActivityLine).filter_by(
        plugin_key="wecp_greenhouse", kind="harvest", status=status))]


def application(stage: int = TAKE_HOME, status: str = "active") -> dict:
    return {"id": APPLICATION, "candidate_id": CANDIDATE, "status": status,
            "current_stage": {"id": stage, "name": "x"}, "jobs": [{"id": JOB, "name": "Backend Engineer"}]}


@pytest.fixture
def database_url(postgres_db):
    return postgres_db.url  # the subject is the HTTP conversation: one database is enough


@pytest.fixture(autouse=True)
def no_pause(app):
    yield
    from hub.extensions import get_redis

    for key in get_redis().scan_iter("wecp_greenhouse:harvest:*"):
        get_redis().delete(key)


def test_a_pass_is_noted_and_moved_forward_once(app, hogwarts, durmstrang):
    connect_harvest(hogwarts, **ONSITE_PICKED)
    note, move = completed(app, hogwarts)
    assert (note.action, note.key, move.action) == ("note", f"note:{note.result_id}", "move")
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.POST, f"{GREENHOUSE}/v3/notes", status=201, json={"id": 9})
        assert attempt(note.id).code == "noted"
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/applications/{APPLICATION}", json=application())
        # Two pages: the second only through the Link header, followed exactly as given.
        after = f"{GREENHOUSE}/v3/job_stages?cursor=abc"
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/job_stages", json=STAGES[:2],
                       headers={"Link": f'<{after}>; rel="next"'},
                       match=[responses.matchers.query_param_matcher({"per_page": "500"})])
        greenhouse.add(responses.GET, after, json=STAGES[2:],
                       match=[responses.matchers.query_param_matcher({"cursor": "abc"})])
        greenhouse.add(responses.POST, f"{GREENHOUSE}/v3/applications/{APPLICATION}/move", status=204)
        assert attempt(move.id).code == "moved"
        # A duplicate job acts on nothing.
        assert attempt(note.id).code == "already_done" and attempt(move.id).code == "already_done"
        calls = [(c.request.method, urlsplit(c.request.url).path) for c in greenhouse.calls]
        bodies = [json.loads(c.request.body) for c in greenhouse.calls if c.request.method == "POST"]
        headers = greenhouse.calls[0].request.headers
    assert calls.count(("POST", "/v3/notes")) == 1 and calls.count(("POST", f"/v3/applications/{APPLICATION}/move")) == 1
    assert headers["Authorization"] == "Bearer harvest-access"
    assert bodies[0]["candidate_id"] == CANDIDATE and "View a detailed report on WeCP: http" in bodies[0]["body"]
    assert "passed" in bodies[0]["body"] and bodies[1] == {"from_stage_id": TAKE_HOME, "to_stage_id": ONSITE}
    assert lines("ok") == ["the score is a note on the candidate in Greenhouse", "moved to “Onsite” in Greenhouse (passed)"]
    # An organization that never connected Harvest gets no such work.
    assert {r.organization_id for r in db.session.scalars(db.select(HarvestWrite))} == {hogwarts.admin.organization_id}


def test_a_fail_is_noted_and_nobody_is_moved(app, hogwarts):
    connect_harvest(hogwarts, **ONSITE_PICKED)
    (note,) = completed(app, hogwarts, right=False)
    assert note.action == "note"


@pytest.mark.parametrize("found, why", [
    (application(status="rejected"), "the application is rejected"),
    (application(stage=ONSITE), "already in “Onsite”"),
    (application(stage=999), "already past “Onsite”"),
])
def test_a_candidate_who_moved_on_is_not_moved(app, hogwarts, found, why):
    connect_harvest(hogwarts, **ONSITE_PICKED, notes=False)
    (move,) = completed(app, hogwarts)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as greenhouse:
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/applications/{APPLICATION}", json=found)
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/job_stages", json=STAGES)
        assert attempt(move.id).status == "skipped"
        assert all(c.request.method == "GET" for c in greenhouse.calls)
    (line,) = lines("skipped")
    assert why in line


def test_429_pauses_the_connection_for_every_worker_without_a_call(app, hogwarts):
    connect_harvest(hogwarts)
    (note,) = completed(app, hogwarts)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.POST, f"{GREENHOUSE}/v3/notes", status=429, headers={"Retry-After": "30"})
        assert attempt(note.id) == "deferred"
        # The next run, in any worker, is given back without asking Greenhouse.
        assert attempt(note.id) == "deferred"
        assert len(greenhouse.calls) == 1
    assert 25 < harvest.paused_for(note.connection_id) <= 30
    row = db.session.get(HarvestWrite, note.id)
    assert row.status == "pending" and row.due_at > utcnow() + timedelta(seconds=20)


@pytest.mark.parametrize("reset", ["8", "epoch"])
def test_a_spent_budget_pauses_until_greenhouse_resets_it(app, hogwarts, reset):
    conn = connect_harvest(hogwarts)
    reset = str(int(time.time()) + 9) if reset == "epoch" else reset
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/jobs", json=[],
                       headers={"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
        harvest.check(conn.id)
        with pytest.raises(Defer):
            harvest.check(conn.id)
        assert len(greenhouse.calls) == 1
    assert 5 < harvest.paused_for(conn.id) <= 9


def test_a_401_refreshes_the_token_once_with_basic_client_auth_then_calls_again(app, hogwarts):
    app.config.update(GREENHOUSE_HARVEST_CLIENT_ID="wecp-client", GREENHOUSE_HARVEST_CLIENT_SECRET="wecp-secret")
    conn = connect_harvest(hogwarts)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/jobs", status=401)
        greenhouse.add(responses.POST, f"{GREENHOUSE}/oauth/token", json={
            "access_token": "harvest-access-2", "refresh_token": "harvest-refresh-2", "expires_in": 3600})
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/jobs", json=[])
        harvest.check(conn.id)
        token_call = greenhouse.calls[1].request
        assert greenhouse.calls[2].request.headers["Authorization"] == "Bearer harvest-access-2"
    # docs/providers/greenhouse.md#harvest-auth: HTTP Basic client auth, the refresh grant in the form.
    assert token_call.headers["Authorization"] == "Basic " + base64.b64encode(b"wecp-client:wecp-secret").decode()
    assert parse_qs(token_call.body) == {"grant_type": ["refresh_token"], "refresh_token": ["harvest-refresh"]}
    db.session.expire_all()
    assert json.loads(db.session.get(Connection, conn.id).credentials)["refresh_token"] == "harvest-refresh-2"


def test_a_401_after_a_fresh_token_revokes_harvest_and_pauses_its_work(app, hogwarts):
    conn = connect_harvest(hogwarts)
    (note,) = completed(app, hogwarts)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.POST, f"{GREENHOUSE}/v3/notes", status=401)
        greenhouse.add(responses.POST, f"{GREENHOUSE}/oauth/token", json={"access_token": "new", "expires_in": 3600})
        assert attempt(note.id).code == "paused"
    db.session.expire_all()
    assert db.session.get(Connection, conn.id).status == "Revoked"
    assert db.session.get(HarvestWrite, note.id).status == "paused"


def test_an_unknown_note_route_fails_in_words_and_warns_on_the_card(app, hogwarts):
    connect_harvest(hogwarts)
    (note,) = completed(app, hogwarts)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.POST, f"{GREENHOUSE}/v3/notes", status=404, json={"message": "Not Found"})
        assert attempt(note.id).code == "failed"
    row = db.session.get(HarvestWrite, note.id)
    assert row.status == "failed" and "POST /v3/notes answered 404: Not Found" in row.error
    (line,) = lines("failed")
    assert line.startswith("The score was not written as a note in Greenhouse") and "Retry" in line
    card = hogwarts.browser.get("/settings/integrations").get_data(as_text=True)
    assert "1 note(s) or move(s) could not be written in Greenhouse" in card


def test_a_rerun_after_a_crash_finds_the_note_it_wrote(app, hogwarts, monkeypatch):
    connect_harvest(hogwarts)
    (note,) = completed(app, hogwarts)
    db.session.get(HarvestWrite, note.id).attempts = 1  # an earlier run claimed it, then died
    db.session.commit()
    report = re.search(r"http\S+", _note_text(note)).group(0)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/notes", json=[{"id": 1, "body": f"... {report}"}],
                       match=[responses.matchers.query_param_matcher({"candidate_ids": str(CANDIDATE)})])
        assert attempt(note.id, monkeypatch).code == "already_done"
        assert len(greenhouse.calls) == 1


def _note_text(row) -> str:
    from hub.assessments import services
    from plugins.wecp_greenhouse.followup import note_text

    result = services.get_result(row.result_id)
    return note_text(result, "t")


def test_a_next_link_away_from_greenhouse_is_never_followed(app, hogwarts):
    conn = connect_harvest(hogwarts)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/jobs", json=[{"id": 1, "name": "a"}],
                       headers={"Link": '<https://elsewhere.example/steal>; rel="next"'})
        with pytest.raises(harvest.HarvestRefused):
            harvest.open_jobs(conn.id)
        assert len(greenhouse.calls) == 1


def invitation_subject() -> str:
    from hub.mail import OutboundEmail

    return db.session.scalar(db.select(OutboundEmail.subject))


def test_with_harvest_the_invitation_names_the_job(app, hogwarts):
    connect_harvest(hogwarts)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/applications/{APPLICATION}", json=application())
        answer = app.test_client().post(f"{BASE}/send_test", json=send_body(hogwarts.test.id), headers=hogwarts.auth)
        # A repeat finds its interview: Harvest is not asked again.
        again = app.test_client().post(f"{BASE}/send_test", json=send_body(hogwarts.test.id), headers=hogwarts.auth)
        assert len(greenhouse.calls) == 1
    assert answer.status_code == again.status_code == 200
    assert "your assessment for Backend Engineer" in invitation_subject()
    assert db.session.scalar(db.select(Interview.job_title)) == "Backend Engineer"
    # The activity log names the job and filters by it.
    log = hogwarts.browser.get("/settings/integrations/wecp_greenhouse/activity").get_data(as_text=True)
    ref = re.search(r'<option value="([0-9a-f]{16})"[^>]*>Backend Engineer<', log).group(1)
    with responses.RequestsMock() as greenhouse:  # another candidate, whose job Harvest did not say
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/applications/{APPLICATION}", status=503)
        app.test_client().post(f"{BASE}/send_test", headers=hogwarts.auth,
                               json=send_body(hogwarts.test.id, number=2, email="ron@hogwarts.example"))
    everyone = hogwarts.browser.get("/settings/integrations/wecp_greenhouse/activity").get_data(as_text=True)
    one_job = hogwarts.browser.get(f"/settings/integrations/wecp_greenhouse/activity?job={ref}").get_data(as_text=True)
    assert "ron@hogwarts.example" in everyone and "ron@hogwarts.example" not in one_job
    assert "for Backend Engineer" in one_job


@pytest.mark.parametrize("harvest_answer", [{"status": 503}, {"body": requests.ConnectTimeout()}, None])
def test_without_an_answer_from_harvest_the_test_is_sent_all_the_same(app, hogwarts, harvest_answer):
    if harvest_answer is not None:
        connect_harvest(hogwarts)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as greenhouse:
        if harvest_answer is not None:
            greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/applications/{APPLICATION}", **harvest_answer)
        answer = app.test_client().post(f"{BASE}/send_test", json=send_body(hogwarts.test.id), headers=hogwarts.auth)
        assert len(greenhouse.calls) == (1 if harvest_answer is not None else 0)
    assert answer.status_code == 200
    assert invitation_subject().endswith(f"your assessment, “{hogwarts.test.title}”")


@pytest.mark.parametrize("bad", ["1/../2", "", "0", 0, -3, True, 2**63, "١٢", 1.5, None])
def test_ids_from_outside_are_checked_before_a_url(bad):
    with pytest.raises(harvest.InvalidId):
        harvest.harvest_id(bad)


def test_the_admin_picks_a_stage_per_job_from_greenhouses_lists(app, hogwarts, make_user):
    conn = connect_harvest(hogwarts)
    jobs = [{"id": JOB, "name": "Backend Engineer"}, {"id": 5000, "name": "Data Analyst"}]
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/jobs", json=jobs)
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/job_stages", json=STAGES)
        page = hogwarts.browser.get("/integrations/wecp_greenhouse/harvest").get_data(as_text=True)
        assert "Backend Engineer" in page and f'<option value="{ONSITE}"' in page
        token = csrf_token(hogwarts.browser, "/integrations/wecp_greenhouse/harvest")
        # A stage of another job (or made up) is refused and nothing is saved.
        answer = hogwarts.browser.post("/integrations/wecp_greenhouse/harvest", data={
            "csrf_token": token, f"job-{JOB}": "999", "notes": "on"}, follow_redirects=True)
        assert "is not one of its stages" in answer.get_data(as_text=True)
        answer = hogwarts.browser.post("/integrations/wecp_greenhouse/harvest", data={
            "csrf_token": token, f"job-{JOB}": str(ONSITE), "job-5000": ""}, follow_redirects=True)
    db.session.expire_all()
    data = db.session.get(Connection, conn.id).data
    assert data["move_to"] == ONSITE_PICKED["move_to"] and data["notes"] is False
    assert "Onsite" in answer.get_data(as_text=True)
    # A member reads the choice; only admins change it.
    member = make_user(org="Hogwarts", role="member")
    browser = app.test_client()
    sign_in(browser, member.email)
    assert "Onsite" in browser.get("/integrations/wecp_greenhouse/").get_data(as_text=True)
    assert browser.get("/integrations/wecp_greenhouse/harvest").status_code == 403


def test_connect_harvest_with_greenhouses_oauth(app, hogwarts):
    """docs/providers/greenhouse.md#harvest-auth: authorization code, no PKCE, Basic client auth;
    a test read before it is called connected."""
    app.config.update(GREENHOUSE_HARVEST_CLIENT_ID="wecp-client", GREENHOUSE_HARVEST_CLIENT_SECRET="wecp-secret")
    browser = hogwarts.browser
    answer = browser.post("/integrations/wecp_greenhouse/connect", data={
        "csrf_token": csrf_token(browser, "/settings/integrations"), "provider": "harvest"})
    location = urlsplit(answer.headers["Location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{GREENHOUSE}/oauth/authorize"
    assert query["client_id"] == ["wecp-client"] and "code_challenge" not in query
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.POST, f"{GREENHOUSE}/oauth/token", json={
            "access_token": "a1", "refresh_token": "r1", "expires_in": 3600, "token_type": "Bearer"})
        greenhouse.add(responses.GET, f"{GREENHOUSE}/v3/jobs", json=[])
        done = browser.get(f"/integrations/wecp_greenhouse/connect/callback?code=c1&state={query['state'][0]}",
                           follow_redirects=True)
        token_call = greenhouse.calls[0].request
    assert "Greenhouse Harvest is connected" in done.get_data(as_text=True)
    assert token_call.headers["Authorization"].startswith("Basic ")
    assert parse_qs(token_call.body)["grant_type"] == ["authorization_code"]
    conn = db.session.scalar(db.select(Connection).filter_by(provider="harvest"))
    assert conn.usable and conn.organization_id == hogwarts.admin.organization_id
    assert db.session.scalar(db.select(Interview.id)) is None  # nothing else happened
