"""Unit tests of the Lever API client against recorded shapes (responses), real Redis and SQLite."""
import json
import pathlib
import time
from datetime import datetime, timedelta
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from hub import signals
from hub.connections import _store_tokens
from hub.extensions import db, get_redis
from hub.models import Connection, Organization
from hub.plugin import ConnectionUnusable
from plugins.wecp_lever import lever
from plugins.wecp_lever.lever import LeverClient, LeverError, NotFound, RateLimited
from tests.conftest import _make_app

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "lever"
API = "http://lever.test/v1"
TOKEN_URL = "http://lever.test/oauth/token"
ACCESS = "access-token-that-must-never-show"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def app(sqlite_url, redis_server):
    # The client needs config, Redis and a stored connection, not both databases.
    app = _make_app(sqlite_url, redis_server, {"LEVER_API_BASE_URL": API, "LEVER_TOKEN_URL": TOKEN_URL})
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture
def connection(app):
    org = Organization(name="Acme")
    db.session.add(org)
    db.session.flush()
    conn = Connection(organization_id=org.id, plugin_key="wecp_lever", provider="lever")
    _store_tokens(conn, {"access_token": ACCESS, "refresh_token": "refresh-1", "expires_in": 3600})
    db.session.add(conn)
    db.session.commit()
    return conn


@pytest.fixture
def slept(monkeypatch):
    calls = []
    monkeypatch.setattr(lever, "sleep", calls.append)
    return calls


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


def query(call) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def test_iter_pages_follows_next_as_offset(connection, api):
    api.get(f"{API}/postings", json=fixture("postings.list.page1.json"))
    api.get(f"{API}/postings", json=fixture("postings.list.page2.json"))
    postings = LeverClient(connection.id).list_postings(state="published")
    assert [p["text"] for p in postings] == ["Backend Engineer", "Data Engineer"]
    first, second = query(api.calls[0]), query(api.calls[1])
    assert first == {"state": "published", "limit": "100"}
    assert second["offset"] == fixture("postings.list.page1.json")["next"]
    assert api.calls[0].request.headers["Authorization"] == f"Bearer {ACCESS}"


def test_get_opportunity_expands_applications(connection, api):
    opp = fixture("opportunity.expand-applications.json")
    api.get(f"{API}/opportunities/{opp['data']['id']}", json=opp)
    found = LeverClient(connection.id).get_opportunity(opp["data"]["id"])
    assert found["applications"][0]["postingOwner"] == "b1f2c3d4-0000-4000-8000-000000000001"
    assert query(api.calls[0]) == {"expand": "applications"}


def test_list_opportunities_filters_in_lever_terms(connection, api):
    api.get(f"{API}/opportunities", json={"data": [{"id": "o1"}], "hasNext": False})
    found = list(LeverClient(connection.id).list_opportunities(
        posting_id="p1", stage_id="s1", updated_at_start=datetime(2026, 1, 1)))
    assert found == [{"id": "o1"}]
    assert query(api.calls[0]) == {"posting_id": "p1", "stage_id": "s1",
                                   "updated_at_start": "1767225600000", "limit": "100"}


def test_add_note_performs_as_the_user(connection, api):
    api.post(f"{API}/opportunities/o1/notes", json=fixture("note.create.response.json"))
    result = LeverClient(connection.id).add_note("o1", "Score: 42", perform_as="u1")
    assert result == {"noteId": "e0f1a2b3-c4d5-4e6f-8a9b-0c1d2e3f4a5b"}
    assert query(api.calls[0]) == {"perform_as": "u1"}
    assert json.loads(api.calls[0].request.body) == {"value": "Score: 42", "secret": False}


def test_tags_stage_and_webhooks(connection, api):
    api.post(f"{API}/opportunities/o1/addTags", json={"data": {"id": "o1"}})
    api.post(f"{API}/opportunities/o1/removeTags", json={"data": {"id": "o1"}})
    api.put(f"{API}/opportunities/o1/stage", json={"data": {"id": "o1"}})
    api.post(f"{API}/webhooks", json=fixture("webhook.create.response.json"), status=201)
    api.get(f"{API}/webhooks", json=fixture("webhooks.list.json"))
    api.delete(f"{API}/webhooks/w1", status=204)
    client = LeverClient(connection.id)
    client.add_tags("o1", ["WeCP: invited"], perform_as="u1")
    client.remove_tags("o1", ["WeCP: invited"], perform_as="u1")
    client.change_stage("o1", "offer", perform_as="u1")
    created = client.create_webhook("https://hub.example/webhooks/wecp_lever/x", "candidateStageChange")
    assert created["configuration"]["signatureToken"] == "3b9f0c1d2e4a5b6c7d8e9f0a1b2c3d4e"
    assert [w["event"] for w in client.list_webhooks()] == ["candidateStageChange"]
    assert client.delete_webhook("w1") is None
    bodies = [json.loads(c.request.body) if c.request.body else None for c in api.calls]
    assert bodies[0] == {"tags": ["WeCP: invited"]} and bodies[2] == {"stage": "offer"}
    assert bodies[3]["configuration"]["conditions"]["origins"] == lever.ALL_ORIGINS
    assert all(query(c)["perform_as"] == "u1" for c in api.calls[:3])


def test_not_found_carries_status_and_lever_message_but_no_token(connection, api):
    api.get(f"{API}/opportunities/nope", json=fixture("error.404.json"), status=404)
    with pytest.raises(NotFound) as err:
        LeverClient(connection.id).get_opportunity("nope")
    assert (err.value.status, err.value.code) == (404, "ResourceNotFound")
    # Lever's words are for the admin's page only: the exception's text (logs, RQ) has none.
    assert err.value.detail == "Opportunity not found" and "Opportunity not found" in err.value.for_admin()
    assert "Opportunity not found" not in str(err.value) and ACCESS not in str(err.value)


def test_an_error_answer_quoting_a_candidate_leaves_no_text_in_the_exception(connection, api):
    """A 4xx whose body echoes customer data: neither its message nor an odd code reaches str()."""
    api.post(f"{API}/opportunities/o1/notes", status=400,
             json={"code": "<img src=x onerror=alert(1)>", "message": "Ann Secret <ann@example.com> is invalid"})
    with pytest.raises(lever.LeverRefused) as err:
        LeverClient(connection.id).add_note("o1", "note", perform_as="u1")
    assert err.value.code == "" and "Ann Secret" in err.value.detail
    assert "Ann" not in str(err.value) and "<" not in str(err.value) and "onerror" not in repr(err.value.args)


def test_get_is_retried_on_5xx_and_network_errors(connection, api, slept):
    api.get(f"{API}/stages", json=fixture("error.500.json"), status=500)
    api.get(f"{API}/stages", body=requests.ConnectionError("reset"))
    api.get(f"{API}/stages", json=fixture("stages.list.json"))
    assert len(LeverClient(connection.id).list_stages()) == 5
    assert len(api.calls) == 3 and len(slept) == 2


def test_post_is_never_retried_on_5xx_or_network_errors(connection, api, slept):
    api.post(f"{API}/opportunities/o1/notes", json=fixture("error.500.json"), status=500)
    with pytest.raises(LeverError) as err:
        LeverClient(connection.id).add_note("o1", "x", perform_as="u1")
    assert (err.value.status, err.value.code) == (500, "InternalServerError")
    api.post(f"{API}/opportunities/o2/notes", body=requests.ConnectionError("reset"))
    with pytest.raises(LeverError) as err:
        LeverClient(connection.id).add_note("o2", "x", perform_as="u1")
    assert err.value.status is None
    assert len(api.calls) == 2 and slept == []


def test_429_honours_retry_after_then_backs_off_with_jitter(connection, api, slept):
    api.get(f"{API}/users", json=fixture("error.429.json"), status=429, headers={"Retry-After": "3"})
    api.get(f"{API}/users", json=fixture("error.429.json"), status=429)
    api.get(f"{API}/users", json=fixture("users.list.json"))
    assert len(LeverClient(connection.id).list_users()) == 3
    assert slept[0] == 3.0 and 0 <= slept[1] <= 2.0


def test_429_retries_are_bounded(connection, api, slept):
    for _ in range(4):
        api.post(f"{API}/opportunities/o1/notes", json=fixture("error.429.json"), status=429)
    with pytest.raises(RateLimited) as err:
        LeverClient(connection.id).add_note("o1", "x", perform_as="u1")
    assert err.value.status == 429 and len(api.calls) == 4  # 1 + LEVER_MAX_RETRIES


def test_every_request_takes_a_token_from_the_connections_bucket(app, connection, api):
    app.config.update(LEVER_RATE_LIMIT=0.001, LEVER_RATE_BURST=5, LEVER_BURST_HEADROOM=1.0)
    api.get(f"{API}/stages", json=fixture("stages.list.json"))
    client = LeverClient(connection.id)
    for _ in range(3):
        client.list_stages()
    left = float(get_redis().hget(f"hub:ratelimit:wecp_lever:{connection.id}", "tokens"))
    assert 1.9 < left < 2.1


def test_401_refreshes_once_and_retries_with_the_new_token(connection, api):
    api.get(f"{API}/users", status=401, json={"code": "Unauthorized", "message": "Invalid token"})
    api.post(TOKEN_URL, json={"access_token": "access-2", "refresh_token": "refresh-2",
                              "expires_in": 3600})
    api.get(f"{API}/users", json=fixture("users.list.json"))
    assert len(LeverClient(connection.id).list_users()) == 3
    assert api.calls[2].request.headers["Authorization"] == "Bearer access-2"
    assert parse_qs(api.calls[1].request.body)["refresh_token"] == ["refresh-1"]
    db.session.expire_all()
    stored = json.loads(db.session.get(Connection, connection.id).credentials)
    assert (stored["access_token"], stored["refresh_token"]) == ("access-2", "refresh-2")


def test_401_after_a_refresh_marks_the_connection_revoked(connection, api):
    api.get(f"{API}/users", status=401, json={"code": "Unauthorized", "message": "Invalid token"})
    api.post(TOKEN_URL, json={"access_token": "access-2", "refresh_token": "refresh-2",
                              "expires_in": 3600})
    api.get(f"{API}/users", status=401, json={"code": "Unauthorized", "message": "Invalid token"})
    revoked = []
    with signals.connection_revoked.connected_to(lambda s, **kw: revoked.append(kw["reason"])):
        with pytest.raises(ConnectionUnusable):
            LeverClient(connection.id).list_users()
    db.session.expire_all()
    conn = db.session.get(Connection, connection.id)
    assert conn.status == Connection.REVOKED and conn.credentials is None and len(revoked) == 1


def test_expiring_token_is_refreshed_before_the_call(connection, api):
    connection.token_expires_at = datetime.utcnow() + timedelta(minutes=2)
    db.session.commit()
    api.post(TOKEN_URL, json={"access_token": "access-2", "refresh_token": "refresh-2",
                              "expires_in": 3600})
    api.get(f"{API}/stages", json=fixture("stages.list.json"))
    LeverClient(connection.id).list_stages()
    assert api.calls[1].request.headers["Authorization"] == "Bearer access-2"


# --- in a worker's job: given back, never waiting ---------------------------------------------

class FakeJob:
    def __init__(self, job_id, meta=None):
        self.id, self.meta = job_id, meta or {}


@pytest.fixture
def in_job(app, monkeypatch):
    """Calls made as if by the RQ job ``job_id`` (each run in a fresh app context, as a worker does)."""
    current = {}
    monkeypatch.setattr(lever, "get_current_job", lambda: current.get("job"))

    def run(job_id, fn):
        current["job"] = FakeJob(job_id)
        try:
            with app.app_context():
                return fn()
        finally:
            current.pop("job")
    return run


def drain(connection_id: str) -> None:
    """Take every token of the account's bucket (another worker's burst)."""
    bucket = LeverClient(connection_id).bucket
    while bucket.try_acquire() == 0:
        pass


def test_a_job_with_no_token_is_given_back_and_runs_its_calls_when_they_are_due(connection, api, in_job,
                                                                                 slept, app):
    from hub.jobs import Defer

    app.config.update(LEVER_RATE_LIMIT=2.0, LEVER_RATE_BURST=1)
    api.get(f"{API}/opportunities/opp-1", json={"data": {"id": "opp-1"}})
    api.post(f"{API}/opportunities/opp-1/notes", json={"data": {"noteId": "n-1"}})
    drain(connection.id)

    def note_job():
        lever.plan_calls(2)
        client = LeverClient(connection.id)
        client.get_opportunity("opp-1")
        return client.add_note("opp-1", "a note", perform_as="u-1")
    with pytest.raises(Defer) as deferred:
        in_job("job-1", note_job)
    assert len(api.calls) == 0 and slept == []  # no call, no wait: the worker is free at once
    assert 0.5 < deferred.value.seconds <= 1.5  # both calls reserved: the second due in ~1 s at 2/s
    # The job's next run has its two calls reserved: it takes no token and is not given back again.
    drain(connection.id)
    assert in_job("job-1", note_job) == {"noteId": "n-1"}
    assert len(api.calls) == 2 and slept == []


def test_a_429_in_a_job_gives_the_worker_back_for_retry_after(connection, api, in_job, slept):
    from hub.jobs import Defer

    api.get(f"{API}/opportunities/opp-1", status=429, headers={"Retry-After": "7"}, json={})
    with pytest.raises(Defer) as deferred:
        in_job("job-2", lambda: LeverClient(connection.id).get_opportunity("opp-1"))
    assert deferred.value.seconds == 7.0 and slept == [] and len(api.calls) == 1


def test_a_call_beyond_the_plan_never_waits_in_the_job(connection, api, in_job, slept, app):
    """A job planned one call but made two (a cache miss behind the author): with no token for
    the second it is given back at once, not held for LEVER_MAX_WAIT, and its next run has both
    calls reserved. Before, the call waited in the job up to 30 s, then failed (RateLimited)."""
    from hub.jobs import Defer

    app.config.update(LEVER_RATE_LIMIT=2.0, LEVER_RATE_BURST=1)
    api.get(f"{API}/users", json={"data": [], "hasNext": False})
    api.get(f"{API}/opportunities/opp-1", json={"data": {"id": "opp-1"}})

    def job():
        lever.plan_calls(1)
        client = LeverClient(connection.id)
        client.list_users()
        drain(connection.id)  # another worker takes the rest meanwhile
        return client.get_opportunity("opp-1")
    started = time.monotonic()
    with pytest.raises(Defer) as deferred:
        in_job("job-extra", job)
    assert time.monotonic() - started < 5 and slept == []
    assert 0 < deferred.value.seconds <= 1.5 and len(api.calls) == 1
    # Its next run has both calls reserved: not given back, no token taken from the bucket.
    time.sleep(deferred.value.seconds)
    assert in_job("job-extra", lambda: (lever.plan_calls(1), LeverClient(connection.id).list_users(),
                                        LeverClient(connection.id).get_opportunity("opp-1"))[2]) == {"id": "opp-1"}
    assert len(api.calls) == 3


def test_outside_a_job_a_call_waits_for_its_token(connection, api, app):
    app.config.update(LEVER_RATE_LIMIT=20.0, LEVER_RATE_BURST=1)
    api.get(f"{API}/opportunities/opp-1", json={"data": {"id": "opp-1"}})
    drain(connection.id)
    assert LeverClient(connection.id).get_opportunity("opp-1") == {"id": "opp-1"}


def test_background_work_reserves_nothing_while_others_wait_for_the_tokens(connection, api, in_job, app):
    """Tags come after the invitations of a bulk move: they take no reservation in the queue."""
    from hub.jobs import Defer

    app.config.update(LEVER_RATE_LIMIT=1.0, LEVER_RATE_BURST=1)
    bucket = LeverClient(connection.id).bucket
    drain(connection.id)
    assert bucket.reserve(3)[0]  # three invitations' reads are queued up behind the empty bucket

    def tag_job():
        lever.plan_calls(1, background=True)
        LeverClient(connection.id).add_tags("opp-1", ["WeCP: invited"], perform_as="u-1")
    with pytest.raises(Defer) as deferred:
        in_job("tag-1", tag_job)
    assert deferred.value.seconds > 2 and len(api.calls) == 0
    # Nothing reserved for it: the next reservation is due right after the invitations' three.
    reserved, wait = bucket.reserve(1)
    assert reserved and 3.5 < wait < 4.5


def test_a_tag_given_back_for_its_turn_is_not_claimed(connection, api, app, monkeypatch):
    """Most tags of a bulk move are given back while its invitations hold the tokens: their
    turn is asked before the row is claimed, so such a run writes nothing (no attempt spent)."""
    from rq import Retry

    from hub import outbox
    from plugins.wecp_lever.flow import tag_opportunity
    from plugins.wecp_lever.models import Tag

    app.config.update(LEVER_RATE_LIMIT=1.0, LEVER_RATE_BURST=1)
    tag = Tag(organization_id=connection.organization_id, connection_id=connection.id, key="invited:x",
              opportunity_id="opp-1", tags=["WeCP: invited"], perform_as="u-1", status="pending")
    db.session.add(tag)
    db.session.commit()
    kind = outbox.kind_of(tag_opportunity)
    job = FakeJob(kind.job_id(tag.id))
    monkeypatch.setattr(lever, "get_current_job", lambda: job)
    monkeypatch.setattr(outbox, "get_current_job", lambda: job)
    drain(connection.id)
    assert LeverClient(connection.id).bucket.reserve(3)[0]  # invitations' reads queued up
    before = tag.due_at
    with app.app_context():
        assert isinstance(outbox.run(kind, tag.id), Retry)
    db.session.expire_all()
    # Untouched: a claimed run given back would have moved its due time (and written twice).
    assert (tag.status, tag.attempts, tag.due_at) == ("pending", 0, before) and len(api.calls) == 0


def test_work_admitted_when_stored_runs_once_on_its_turn(connection, api, in_job, slept, app):
    """``admission``: a note's calls are reserved when its row is stored; its job, enqueued for
    then, spends them without reserving again or being given back."""
    app.config.update(LEVER_RATE_LIMIT=2.0, LEVER_RATE_BURST=1)
    api.get(f"{API}/opportunities/opp-1", json={"data": {"id": "opp-1"}})
    api.post(f"{API}/opportunities/opp-1/notes", json={"data": {"noteId": "n-1"}})
    drain(connection.id)
    row = mock.Mock(connection_id=connection.id)
    wait = lever.admission(2)(row, "note-job-1")
    assert 0.5 < wait <= 1.5  # the second of two calls is due in ~1 s at 2/s
    # A reservation made after it queues behind it: the note's calls are held.
    reserved, later = LeverClient(connection.id).bucket.reserve(1)
    assert reserved and later > wait

    def note_job():
        lever.plan_calls(2)
        client = LeverClient(connection.id)
        client.get_opportunity("opp-1")
        return client.add_note("opp-1", "a note", perform_as="u-1")
    drain(connection.id)
    assert in_job("note-job-1", note_job) == {"noteId": "n-1"}  # not given back: it runs once
    assert len(api.calls) == 2 and slept == []


def test_the_hub_plans_with_90_percent_of_lever_s_rate_and_half_its_burst(app, connection):
    """Room in Lever's own bucket for work that runs after its turn, several calls together
    (docs/performance.md: without it, a bulk move's late tags drew 11-35 answers 429)."""
    bucket = LeverClient(connection.id).bucket
    assert (bucket.rate, bucket.burst) == (9.0, 10)


def test_a_run_that_starts_well_after_its_reserved_turn_does_not_spend_it(connection, api, in_job, slept, app):
    """Several late runs spending their old turns at once would reach Lever together, over its
    burst: a run more than ``LATE_GRACE`` late reserves again instead (and is given back)."""
    from hub.jobs import Defer

    app.config.update(LEVER_RATE_LIMIT=2.0, LEVER_RATE_BURST=1)
    api.get(f"{API}/opportunities/opp-1", json={"data": {"id": "opp-1"}})
    drain(connection.id)
    lever._keep_reservation(get_redis(), "late-job", 1, -5.0)  # its turn was 5 s ago
    with pytest.raises(Defer):
        in_job("late-job", lambda: LeverClient(connection.id).get_opportunity("opp-1"))
    assert len(api.calls) == 0
    lever._keep_reservation(get_redis(), "on-time-job", 1, -0.2)  # just now: spent as reserved
    assert in_job("on-time-job", lambda: LeverClient(connection.id).get_opportunity("opp-1")) == {"id": "opp-1"}


def test_background_work_is_admitted_only_onto_free_tokens(connection, api, app):
    """A tag stored while invitations wait takes no turn ahead of later ones: it is scheduled
    after the queued calls, in line with the other tags waiting, reserving nothing; with free
    tokens it runs at once."""
    app.config.update(LEVER_RATE_LIMIT=1.0, LEVER_RATE_BURST=2, LEVER_BURST_HEADROOM=1.0)
    row = mock.Mock(connection_id=connection.id)
    assert lever.admission(1, background=True)(row, "tag-now") == 0.0  # a free token: now
    bucket = LeverClient(connection.id).bucket
    drain(connection.id)
    assert bucket.reserve(3)[0]  # three invitations queued
    wait = lever.admission(1, background=True)(row, "tag-later")
    assert 2.5 < wait < 6  # after the three queued calls, and one call's time
    # The next tag waiting is placed one call later, not at the same moment (they would find
    # one turn between them and be given back again and again: docs/performance.md, B5).
    second = lever.admission(1, background=True)(row, "tag-later-2")
    assert 0.9 < second - wait < 1.4
    assert get_redis().get("hub:ratelimit:wecp_lever:prepaid:tag-later") is None
    reserved, next_turn = bucket.reserve(1)
    assert reserved and next_turn < 4.5  # the next invitation is not behind the tags
