"""The WeCP–Lever flow against the sandbox: link, stage change → invitation, completion → note."""
from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.activity import ActivityLine
from hub.assessments.models import Invitation, Result
from hub.assessments.services import (
    complete_invitation,
    invitation_url,
    report_url,
    start_invitation,
)
from hub.extensions import db
from hub.inbox import WebhookDelivery
from hub.jobs import run_inline_jobs
from hub.mail import OutboundEmail
from plugins.wecp_lever.flow import post_note, reconcile_postings
from plugins.wecp_lever.lever import LEVER_ID as LEVER_ID_SHAPE
from plugins.wecp_lever.lever import LeverError
from plugins.wecp_lever.models import Note, PostingLink
from tests.conftest import csrf_token
from tests.plugins.wecp_lever.conftest import (
    ACCOUNT,
    ASSESSMENT,
    BACKEND,
    CLOSED,
    FRONTEND,
    HANK,
    NEW,
    OLIVIA,
    SCREEN,
    make_test,
)
from tests.plugins.wecp_lever.signing import sign_lever_delivery


@pytest.fixture
def app_config(sandbox):
    # Jobs run inline here; tests/e2e runs the same flow with real workers and SMTP.
    return {"LEVER_SANDBOX_URL": sandbox.url, "HUB_QUEUE_MODE": "inline", "LEVER_MAX_RETRIES": 0}


def link(client, test, posting=BACKEND, stage=ASSESSMENT):
    token = csrf_token(client, f"/tests/{test.id}")
    return client.post(f"/api/v1/tests/{test.id}/lever-links", json={"posting_id": posting, "stage_id": stage},
                       headers={"X-CSRFToken": token})


def deliver(client, conn, opportunity_id, to_stage, from_stage=NEW, token=None):
    """What Lever sends after a move (the sandbox cannot reach the test client, so we sign it)."""
    body = sign_lever_delivery(conn.webhook_secret, {
        "event": "candidateStageChange",
        "data": {"opportunityId": opportunity_id, "candidateId": opportunity_id,
                 "fromStageId": from_stage, "toStageId": to_stage}}, token=token)
    return client.post(f"/webhooks/wecp_lever/{conn.endpoint_id}", data=json.dumps(body),
                       content_type="application/json")


def new_candidate(sandbox, posting=BACKEND, email="ada@example.com", name="Ada Lovelace"):
    candidate = {"name": name, "emails": [email] if email else []}
    return sandbox.admin.add_candidates(ACCOUNT, posting, NEW, candidates=[candidate])[0]


def move(sandbox, client, conn, opp, stage=ASSESSMENT):
    sandbox.admin.move(ACCOUNT, [opp], stage)
    return deliver(client, conn, opp, stage)


def move_expecting_failure(sandbox, client, conn, opp, stage=ASSESSMENT, error=LeverError):
    """A move whose follow-up job fails: inline jobs raise where a worker would retry."""
    sandbox.admin.move(ACCOUNT, [opp], stage)
    with pytest.raises(error):
        deliver(client, conn, opp, stage)
    db.session.rollback()


def between_retries(row):
    """Put a row that failed inline (no retries there) back as RQ leaves it between two retries."""
    row.status, row.finished_at, row.outcome = "pending", None, None
    db.session.commit()


def invitations():
    db.session.expire_all()
    return db.session.scalars(db.select(Invitation)).all()


def take_test(invitation, correct: bool) -> Result:
    """The candidate opens the emailed link, starts and submits (all right, or nothing)."""
    token = invitation_url(invitation.id).rsplit("/", 1)[1]
    start_invitation(token)
    db.session.commit()
    answers = {str(q.id): [0] for q in invitation.test.questions} if correct else {}
    result = complete_invitation(token, answers)
    db.session.commit()  # services write in the caller's transaction; its jobs follow the commit
    run_inline_jobs()
    return result


def lever_writes(sandbox, since=0):
    return [r for r in sandbox.admin.requests_log(since) if r["method"] != "GET" and r["path"].startswith("/v1/opportunities")]


def test_link_rules_one_stage_per_posting_many_postings_per_test(connected, sandbox):
    client, conn = connected
    test = make_test(conn.organization_id)
    created = link(client, test)
    assert created.status_code == 201, created.json
    assert created.json["data"]["posting_text"] == "Backend Engineer"
    assert created.json["data"]["stage_text"] == "Assessment"
    second_stage = link(client, test, stage=SCREEN)
    assert second_stage.status_code == 409 and "only one stage" in second_stage.json["error"]
    assert link(client, test, posting=FRONTEND).status_code == 201
    other = make_test(conn.organization_id, "Another test")
    assert link(client, other).status_code == 201  # two tests may share a posting and stage
    assert link(client, test, posting=CLOSED).status_code == 400
    listed = client.get(f"/api/v1/tests/{test.id}/lever-links").json["data"]
    assert [item["posting_id"] for item in listed] == [BACKEND, FRONTEND]
    assert listed[0]["linked_by"] == "admin@acme-wecp.example"


def test_link_api_refuses_unknown_fields(connected):
    client, conn = connected
    test = make_test(conn.organization_id)
    token = csrf_token(client, f"/tests/{test.id}")
    response = client.post(f"/api/v1/tests/{test.id}/lever-links", headers={"X-CSRFToken": token},
                           json={"posting_id": BACKEND, "stage_id": ASSESSMENT, "owner": "me"})
    assert response.status_code == 422 and "owner" in response.json["fields"]


def test_postings_and_stages_for_the_picker(connected):
    client, _ = connected
    postings = client.get("/api/v1/integrations/wecp_lever/postings").json["data"]
    assert CLOSED not in {p["id"] for p in postings} and BACKEND in {p["id"] for p in postings}
    found = client.get("/api/v1/integrations/wecp_lever/postings?q=backend").json["data"]
    assert [p["text"] for p in found] == ["Backend Engineer"]
    stages = client.get("/api/v1/integrations/wecp_lever/stages").json["data"]
    assert {"id": ASSESSMENT, "text": "Assessment"} in stages


def test_link_page_in_html(connected):
    client, conn = connected
    test = make_test(conn.organization_id)
    page = client.get(f"/tests/{test.id}").get_data(as_text=True)
    assert "Link job posting from Lever" in page
    picker = client.get(f"/integrations/wecp_lever/tests/{test.id}/link?q=engineer").get_data(as_text=True)
    assert "Backend Engineer" in picker and "Sales Lead" not in picker and "Assessment" in picker
    token = csrf_token(client, f"/integrations/wecp_lever/tests/{test.id}/link")
    done = client.post(f"/integrations/wecp_lever/tests/{test.id}/link",
                       data={"posting_id": BACKEND, "stage_id": ASSESSMENT, "csrf_token": token})
    assert done.status_code == 302
    again = client.post(f"/integrations/wecp_lever/tests/{test.id}/link",
                        data={"posting_id": BACKEND, "stage_id": SCREEN, "csrf_token": token})
    assert again.status_code == 409 and "already linked" in again.get_data(as_text=True)
    assert "Unlink" in client.get(f"/tests/{test.id}").get_data(as_text=True)


def test_unlink_asks_first_and_says_who_is_still_taking_the_test(connected, sandbox):
    from plugins.wecp_lever.models import PostingLink

    client, conn = connected
    test = make_test(conn.organization_id)
    assert link(client, test).status_code == 201
    move(sandbox, client, conn, new_candidate(sandbox))
    link_id = db.session.scalar(db.select(PostingLink.id))
    panel = client.get(f"/tests/{test.id}").get_data(as_text=True)
    assert f"/integrations/wecp_lever/links/{link_id}/unlink" in panel
    page = client.get(f"/integrations/wecp_lever/links/{link_id}/unlink").get_data(as_text=True)
    assert "Unlink “Backend Engineer” from" in page and "“Assessment”" in page
    assert "1 candidate invited to this test from “Backend Engineer” has not finished yet" in page
    assert db.session.get(PostingLink, link_id) is not None  # asking changed nothing
    token = csrf_token(client, f"/integrations/wecp_lever/links/{link_id}/unlink")
    assert client.post(f"/integrations/wecp_lever/links/{link_id}/unlink",
                       data={"csrf_token": token}).status_code == 302
    db.session.expire_all()
    assert db.session.get(PostingLink, link_id) is None


def test_stage_change_invites_once_and_the_result_becomes_one_note(connected, sandbox):
    client, conn = connected
    test = make_test(conn.organization_id)
    assert link(client, test).status_code == 201
    opp = new_candidate(sandbox)
    since = sandbox.admin.requests_log()[-1]["seq"]
    response = move(sandbox, client, conn, opp)
    assert response.status_code == 200
    [invitation] = invitations()
    assert (invitation.candidate_email, invitation.source, invitation.source_ref) == \
        ("ada@example.com", "wecp_lever", opp)
    email = db.session.scalar(db.select(OutboundEmail))
    assert email is not None and email.to == "ada@example.com"
    reads = [r for r in sandbox.admin.requests_log(since) if r["method"] == "GET"]
    assert [r["path"] for r in reads].count(f"/v1/opportunities/{opp}") == 1
    tags = [r for r in lever_writes(sandbox, since) if r["path"].endswith("/addTags")]
    assert len(tags) == 1 and tags[0]["perform_as"] == OLIVIA

    # The same delivery again, and the same move reported once more: nothing new.
    assert deliver(client, conn, opp, ASSESSMENT).status_code == 200
    assert len(invitations()) == 1

    result = take_test(invitations()[0], correct=True)
    notes = sandbox.admin.notes(ACCOUNT)
    assert len(notes) == 1
    value = notes[0]["value"]
    assert "Backend screen" in value and "100%" in value and "Passed" in value
    assert f"View a detailed report on WeCP: {report_url(result.id)}" in value
    assert notes[0].get("perform_as", notes[0].get("user")) == OLIVIA
    note = db.session.scalar(db.select(Note))
    assert (note.status, note.outcome, note.perform_as_role) == ("done", "note_posted", "owner")
    # The report link from the note opens the report.
    report = client.get(report_url(result.id).replace("http://hub.test", ""))
    assert report.status_code == 200 and "Backend screen" in report.get_data(as_text=True)
    # The job running again posts nothing.
    assert post_note(note.id)["outcome"] == "already_done"
    assert len(sandbox.admin.notes(ACCOUNT)) == 1


def test_a_run_that_died_after_lever_accepted_the_note_finds_it(connected, sandbox):
    client, conn = connected
    test = make_test(conn.organization_id)
    link(client, test)
    opp = new_candidate(sandbox)
    move(sandbox, client, conn, opp)
    [invitation] = invitations()
    take_test(invitation, correct=False)
    note = db.session.scalar(db.select(Note))
    assert note.status == "done" and len(sandbox.admin.notes(ACCOUNT)) == 1
    # Simulate the crash window: Lever holds the note, our row says "running", lease over.
    note.status, note.lever_note_id = "running", None
    note.lease_until = note.finished_at.replace(year=2000)
    db.session.commit()
    assert post_note(note.id) == {"outcome": "note_posted", "status": "done", "found": True}
    db.session.expire_all()
    assert "found in Lever" in db.session.get(Note, note.id).summary
    assert len(sandbox.admin.notes(ACCOUNT)) == 1


def test_candidate_in_the_posting_before_the_link_is_not_invited(connected, sandbox):
    client, conn = connected
    test = make_test(conn.organization_id)
    opp = new_candidate(sandbox)
    time.sleep(0.01)
    link(client, test)
    move(sandbox, client, conn, opp)
    assert invitations() == []
    delivery = db.session.scalar(db.select(WebhookDelivery))
    assert delivery.status == "skipped" and "before" in delivery.summary


@pytest.mark.parametrize("stage,posting", [(SCREEN, BACKEND), (ASSESSMENT, FRONTEND)])
def test_another_stage_or_another_posting_is_ignored(connected, sandbox, stage, posting):
    client, conn = connected
    test = make_test(conn.organization_id)
    link(client, test)
    opp = new_candidate(sandbox, posting=posting)
    move(sandbox, client, conn, opp, stage=stage)
    assert invitations() == []
    assert db.session.scalar(db.select(WebhookDelivery)).status == "skipped"


def test_unlinked_stage_costs_no_lever_call(connected, sandbox):
    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    since = sandbox.admin.requests_log()[-1]["seq"]
    move(sandbox, client, conn, opp, stage=SCREEN)
    assert [r for r in sandbox.admin.requests_log(since) if r["path"].startswith("/v1/")] == []


def test_no_email_leaves_one_note_in_lever(connected, sandbox):
    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox, email=None)
    move(sandbox, client, conn, opp)
    deliver(client, conn, opp, ASSESSMENT)
    assert invitations() == []
    notes = sandbox.admin.notes(ACCOUNT)
    assert len(notes) == 1 and "no email address" in notes[0]["value"]


def test_archived_opportunity_is_skipped(connected, sandbox):
    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    sandbox.admin.patch_opportunity(opp, archived={"reason": "withdrew", "archivedAt": 1})
    move(sandbox, client, conn, opp)
    assert invitations() == []
    assert "archived" in db.session.scalar(db.select(WebhookDelivery)).summary


def test_two_tests_on_one_posting_and_stage_both_invite(connected, sandbox):
    client, conn = connected
    link(client, make_test(conn.organization_id, "One"))
    link(client, make_test(conn.organization_id, "Two"))
    opp = new_candidate(sandbox)
    move(sandbox, client, conn, opp)
    assert sorted(i.test.title for i in invitations()) == ["One", "Two"]


def test_moving_out_and_back_in_does_not_invite_again(connected, sandbox):
    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    move(sandbox, client, conn, opp)
    move(sandbox, client, conn, opp, stage=SCREEN)
    move(sandbox, client, conn, opp)
    assert len(invitations()) == 1


def test_note_falls_back_to_the_hiring_manager_when_the_owner_is_deactivated(connected, sandbox):
    client, conn = connected
    link(client, make_test(conn.organization_id), posting=FRONTEND)
    opp = new_candidate(sandbox, posting=FRONTEND)
    move(sandbox, client, conn, opp)
    [invitation] = invitations()
    take_test(invitation, correct=False)
    note = db.session.scalar(db.select(Note))
    assert (note.status, note.perform_as, note.perform_as_role) == ("done", HANK, "hiring_manager")
    assert "Failed" in sandbox.admin.notes(ACCOUNT)[0]["value"]


def test_reconciliation_acts_on_a_move_whose_webhook_was_lost(connected, sandbox):
    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    sandbox.admin.move(ACCOUNT, [opp], ASSESSMENT)  # no delivery reaches the hub
    assert invitations() == []
    assert reconcile_postings(conn.id) == {"outcome": "reconciled", "status": "done", "checked": 1, "invited": 1}
    assert len(invitations()) == 1
    # The webhook arriving late after all, and the next reconciliation: nothing twice.
    deliver(client, conn, opp, ASSESSMENT)
    reconcile_postings(conn.id)
    assert len(invitations()) == 1


def lever_reads(sandbox) -> int:
    return sum(1 for r in sandbox.admin.requests_log() if r["method"] == "GET")


def runs_ago(conn, minutes: float) -> None:
    """The connection's last reconciliation, ``minutes`` earlier."""
    from datetime import timedelta

    from plugins.wecp_lever.models import ReconcileCursor

    cursor = db.session.get(ReconcileCursor, conn.id)
    cursor.ran_at -= timedelta(minutes=minutes)
    db.session.commit()


def test_reconciliation_backs_off_while_nothing_moves_and_a_delivery_resets_it(connected, sandbox):
    """Lever sends this account's stage changes; a linked stage where nobody moves is read after
    1, 2, 4 … intervals (at most hourly), with no call to Lever in between; a webhook delivery
    of the account makes the next run read."""
    from plugins.wecp_lever.models import ReconcileCursor

    client, conn = connected
    link(client, make_test(conn.organization_id))
    move(sandbox, client, conn, new_candidate(sandbox, email="alan@example.com", name="Alan Turing"),
         stage=SCREEN)  # Lever sends (a move elsewhere)
    from datetime import timedelta
    for delivery in db.session.scalars(db.select(WebhookDelivery)):
        delivery.received_at -= timedelta(hours=1)
    for posting_link in db.session.scalars(db.select(PostingLink)):
        posting_link.linked_at -= timedelta(hours=1)  # and the link made then
    db.session.commit()
    assert reconcile_postings(conn.id)["checked"] == 0  # the first run reads: nothing moved here
    reads = lever_reads(sandbox)
    assert reconcile_postings(conn.id) == {"outcome": "skipped", "status": "skipped", "reason": "quiet"}
    assert lever_reads(sandbox) == reads  # no call to Lever
    runs_ago(conn, 5)  # one interval later: read again, still nothing
    assert reconcile_postings(conn.id)["outcome"] == "reconciled" and lever_reads(sandbox) > reads
    assert db.session.get(ReconcileCursor, conn.id).quiet_runs == 2
    runs_ago(conn, 5)  # two intervals are due now, one has passed
    assert reconcile_postings(conn.id)["reason"] == "quiet"
    # A delivery of the account (a move elsewhere) reads at once, and finds a lost move.
    opp = new_candidate(sandbox)
    sandbox.admin.move(ACCOUNT, [opp], ASSESSMENT)  # its own webhook lost
    other = new_candidate(sandbox, email="grace@example.com", name="Grace Hopper")
    move(sandbox, client, conn, other, stage=SCREEN)
    assert reconcile_postings(conn.id)["invited"] == 1
    assert db.session.get(ReconcileCursor, conn.id).quiet_runs == 0


def test_reconciliation_keeps_reading_where_lever_never_sent_a_stage_change(connected, sandbox):
    """No delivery ever (Candidate Stage Change may be off): reconciliation is how moves are
    found, so it reads every interval however quiet; a new link reads at once too."""
    client, conn = connected
    link(client, make_test(conn.organization_id))
    assert reconcile_postings(conn.id)["checked"] == 0
    reads = lever_reads(sandbox)
    assert reconcile_postings(conn.id)["outcome"] == "reconciled" and lever_reads(sandbox) > reads


def lever_alerts(client) -> list[dict]:
    [card] = [c for c in client.get("/api/v1/integrations").json["data"] if c["key"] == "wecp_lever"]
    return card["alerts"]


def test_moves_found_only_by_reconciliation_warn_until_lever_sends_again(connected, sandbox):
    """Candidate Stage Change switched off in Lever: the invitation still goes out (late, by
    reconciliation), and the card and the activity log say why and what to switch on."""
    client, conn = connected
    link(client, make_test(conn.organization_id))
    assert lever_alerts(client) == []
    opp = new_candidate(sandbox)
    sandbox.admin.move(ACCOUNT, [opp], ASSESSMENT)  # the toggle is off: no delivery
    assert reconcile_postings(conn.id)["invited"] == 1
    [line] = db.session.scalars(db.select(ActivityLine).filter_by(kind="webhook", status="missed")).all()
    assert line.subject_ref == opp and "Candidate Stage Change" in line.message
    [alert] = lever_alerts(client)
    assert "Lever is not sending stage changes" in alert["message"] and "a move" in alert["message"]
    assert "Candidate Stage Change" in alert["next_step"]
    page = client.get("/settings/integrations").get_data(as_text=True)
    assert "Lever is not sending stage changes" in page
    assert re.search(r'class="step todo">[^<]*<span class="tick"[^>]*>[^<]*</span> <span class="label">Lever sends '
                     r'stage changes', page)  # the checklist's tick is undone too
    # The toggle switched on: Lever's next stage change (any stage) clears the warning.
    other = new_candidate(sandbox, email="grace@example.com", name="Grace Hopper")
    move(sandbox, client, conn, other, stage=SCREEN)
    assert lever_alerts(client) == []


def test_a_move_reconciliation_acts_on_while_lever_sends_webhooks_is_not_reported_missed(connected, sandbox):
    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    sandbox.admin.move(ACCOUNT, [opp], ASSESSMENT)
    other = new_candidate(sandbox, email="grace@example.com", name="Grace Hopper")
    move(sandbox, client, conn, other, stage=SCREEN)  # Lever sends: this move's own is on its way
    assert reconcile_postings(conn.id)["invited"] == 1
    assert db.session.scalars(db.select(ActivityLine).filter_by(status="missed")).all() == []
    assert lever_alerts(client) == []


def test_a_reconciliation_while_another_of_the_connection_runs_is_skipped(connected, sandbox):
    from hub.extensions import get_redis

    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    sandbox.admin.move(ACCOUNT, [opp], ASSESSMENT)
    lock = get_redis().lock(f"wecp_lever:reconcile:{conn.id}", timeout=30)
    assert lock.acquire(blocking=False)  # a first run (no cursor yet) still going
    try:
        assert reconcile_postings(conn.id) == {"outcome": "skipped", "status": "skipped",
                                               "reason": "already_running"}
        assert invitations() == []
    finally:
        lock.release()
    assert reconcile_postings(conn.id)["invited"] == 1


def test_revoked_connection_pauses_work_and_reconnect_resumes_it(connected, sandbox):
    from hub.models import Connection
    from tests.plugins.wecp_lever.test_connections import connect

    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    sandbox.admin.revoke_app(ACCOUNT, "wecp-hub-test")
    assert move(sandbox, client, conn, opp).status_code == 200
    db.session.expire_all()
    delivery = db.session.scalar(db.select(WebhookDelivery))
    assert delivery.status == "paused" and invitations() == []
    assert db.session.get(Connection, conn.id).status == "Revoked"
    connect(client, sandbox)  # Reconnect: the paused delivery runs (inline queue in this test)
    db.session.expire_all()
    assert db.session.get(WebhookDelivery, delivery.id).status == "done"
    assert len(invitations()) == 1


def test_reconnect_writes_the_tags_left_waiting_at_once(connected, sandbox):
    from plugins.wecp_lever.flow import tag_opportunity
    from plugins.wecp_lever.models import Tag
    from tests.plugins.wecp_lever.test_connections import connect

    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    since = sandbox.admin.requests_log()[-1]["seq"]
    sandbox.admin.add_fault(route="/addTags", error_rate=1.0, status=500)
    move_expecting_failure(sandbox, client, conn, opp)
    sandbox.admin.revoke_app(ACCOUNT, "wecp-hub-test")
    sandbox.admin.clear_faults()
    tag = db.session.scalar(db.select(Tag))
    between_retries(tag)
    # The tag job's retry meets the revoked access: the tag waits for the connection.
    assert tag_opportunity(tag.id)["outcome"] == "paused"
    db.session.expire_all()
    assert db.session.scalar(db.select(Tag.status)) == "paused"
    # The card counts the paused tag, not only events (it said "Paused: 0": issue #40, 3).
    card = " ".join(client.get("/settings/integrations").get_data(as_text=True).split())
    assert 'data-count="paused">0<' in card and 'data-work="paused">1<' in card
    assert 'href="/settings/work">Work needing attention</a>' in card
    # That page says whom the paused work is about, with a link to them in Lever (#40, 4).
    work = client.get("/settings/work").get_data(as_text=True)
    assert f'<a href="{sandbox.url}/candidates/{opp}" rel="noopener" target="_blank">Ada Lovelace · Backend Engineer</a>' in work
    connect(client, sandbox)  # Reconnect: the waiting tag is written (inline queue), not a minute later
    db.session.expire_all()
    assert db.session.scalar(db.select(Tag.status)) == "done"
    added = [r for r in lever_writes(sandbox, since) if r["path"].endswith("/addTags") and r["status"] < 300]
    assert len(added) == 1


def test_activity_log_shows_what_happened(connected, sandbox):
    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox, name="<b>Grace</b> Hopper")
    move(sandbox, client, conn, opp)
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert "&lt;b&gt;Grace&lt;/b&gt; Hopper" in page and "<b>Grace</b>" not in page
    assert "Resend invitation" in page and "invited ada@example.com" in page
    # Stage changes arrive: the card's reminder to switch them on is gone (#40, 6).
    card = client.get("/settings/integrations").get_data(as_text=True)
    assert "Lever sends no stage changes to WeCP" not in card and "Candidate Archive Change" in card


def test_resend_invitation_is_throttled_and_says_so(connected, sandbox):
    """Issue #39, 9: 25 clicks queue one more email, not 25; the page states the limits, a click
    past them says when it may be sent again, and the resend that happened is in the audit log."""
    from hub.models import AuditEvent

    client, conn = connected
    link(client, make_test(conn.organization_id))
    move(sandbox, client, conn, new_candidate(sandbox))
    invitation = invitations()[0]
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert "at most once every\n    10 minutes and 5 times a day for one invitation, and 100 times" in page
    token = csrf_token(client, "/integrations/wecp_lever/")
    for _ in range(25):
        response = client.post(f"/integrations/wecp_lever/invitations/{invitation.id}/resend",
                               data={"csrf_token": token})
        assert response.status_code == 302
    db.session.expire_all()
    emails = db.session.scalars(db.select(OutboundEmail).where(
        OutboundEmail.idempotency_key.startswith(f"invitation:{invitation.id}"))).all()
    assert len(emails) == 2  # the invitation and one resend
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert "it can be sent again from" in page and "one resend every 10 minutes at most" in page
    resent = db.session.scalars(db.select(AuditEvent).filter_by(action="invitation.resent")).all()
    assert [(e.target, e.organization_id) for e in resent] == [(f"invitation:{invitation.id}", conn.organization_id)]


def test_one_test_linked_to_two_postings_shows_each_candidate_s_own_posting(connected, sandbox):
    """Issue #40, 1: with one test linked to Backend and Frontend at the same stage, every row read
    "Frontend Engineer", the Posting filter returned the same rows for either, the Unlink preview
    counted both postings' candidates, and after unlinking Frontend its candidate showed as Backend."""
    from plugins.wecp_lever.models import PostingLink

    client, conn = connected
    test = make_test(conn.organization_id)
    assert link(client, test, posting=BACKEND).status_code == 201
    assert link(client, test, posting=FRONTEND).status_code == 201
    backend = new_candidate(sandbox, posting=BACKEND, email="ada@example.com", name="Ada Backend")
    frontend = new_candidate(sandbox, posting=FRONTEND, email="grace@example.com", name="Grace Frontend")
    move(sandbox, client, conn, backend)
    move(sandbox, client, conn, frontend)

    def rows(query=""):
        page = client.get(f"/integrations/wecp_lever/?{query}").get_data(as_text=True)
        return re.findall(r'<tr[^>]*>\s*<td[^>]*>.*?</td>\s*<td data-label="Candidate"[^>]*>(?:<a[^>]*>)?([^<]+)'
                          r'(?:</a>)?</td>\s*<td data-label="Posting · stage">([^<]+)</td>', page, re.S)

    shown = set(rows())
    assert ("Ada Backend", "Backend Engineer · Assessment") in shown
    assert ("Grace Frontend", "Frontend Engineer · Assessment") in shown
    assert not any(name == "Ada Backend" and "Frontend" in where for name, where in shown)
    assert {name for name, _ in rows(f"job={BACKEND}")} == {"Ada Backend"}
    assert {name for name, _ in rows(f"job={FRONTEND}")} == {"Grace Frontend"}

    ids = dict(db.session.execute(db.select(PostingLink.posting_id, PostingLink.id)).all())
    preview = client.get(f"/integrations/wecp_lever/links/{ids[FRONTEND]}/unlink").get_data(as_text=True)
    assert "1 candidate invited to this test from “Frontend Engineer” has not finished yet" in preview
    token = csrf_token(client, f"/integrations/wecp_lever/links/{ids[FRONTEND]}/unlink")
    client.post(f"/integrations/wecp_lever/links/{ids[FRONTEND]}/unlink", data={"csrf_token": token})
    shown = set(rows())
    assert ("Grace Frontend", "Frontend Engineer · Assessment") in shown  # unlinked, still its posting
    assert not any(name == "Grace Frontend" and "Backend" in where for name, where in shown)
    assert {name for name, _ in rows(f"job={FRONTEND}")} == {"Grace Frontend"}  # still filterable
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert f'<option value="{FRONTEND}"' in page


def test_a_failed_email_is_visible_with_a_retry(connected, sandbox, pg_app):
    from tests.services import free_port

    client, conn = connected
    pg_app.config["SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"  # nothing listens there
    link(client, make_test(conn.organization_id))
    move_expecting_failure(sandbox, client, conn, new_candidate(sandbox), error=ConnectionRefusedError)
    assert len(invitations()) == 1
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert "Emails that could not be sent" in page and "ConnectionRefusedError" in page
    assert "Email: failed" in page and ">Retry</button>" in page


DONE_STAGE = "6e2b3c4d-5f6a-4b7c-9d8e-0f1a2b3c4d5e"  # "Assessment complete"


def invited_with_move_on_pass(connected, sandbox) -> str:
    """A candidate invited while the organization moves those who pass to DONE_STAGE."""
    from hub.settings import set_setting

    client, conn = connected
    set_setting(conn.organization_id, "wecp_lever", "advance_on_pass_stage", DONE_STAGE)
    db.session.commit()
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    move(sandbox, client, conn, opp)
    return opp


def test_optional_move_on_pass_happens_once(connected, sandbox):
    from plugins.wecp_lever.flow import advance_candidate
    from plugins.wecp_lever.models import StageMove

    invited_with_move_on_pass(connected, sandbox)
    take_test(invitations()[0], correct=True)
    moves = [r for r in lever_writes(sandbox) if r["path"].endswith("/stage")]
    assert len(moves) == 1 and moves[0]["perform_as"] == OLIVIA
    move = db.session.scalar(db.select(StageMove))
    assert (move.status, move.stage_id, move.outcome) == ("done", DONE_STAGE, "moved")
    assert advance_candidate(move.id)["outcome"] == "already_done"
    assert len([r for r in lever_writes(sandbox) if r["path"].endswith("/stage")]) == 1


def test_a_move_on_pass_that_lever_refused_is_retried_not_taken_for_done(connected, sandbox):
    from hub.outbox import retry_failed
    from plugins.wecp_lever.flow import advance_candidate
    from plugins.wecp_lever.models import StageMove

    opp = invited_with_move_on_pass(connected, sandbox)
    sandbox.admin.add_fault(route="/stage$", error_rate=1.0, status=503)
    with pytest.raises(LeverError):
        take_test(invitations()[0], correct=True)  # inline: the move's failure surfaces here
    db.session.rollback()
    sandbox.admin.clear_faults()
    move = db.session.scalar(db.select(StageMove))
    assert move.status == "failed" and "503" in move.error  # inline runs have no retries left
    assert sandbox.admin.state(ACCOUNT)["opportunities"][opp] != DONE_STAGE
    # The card says so, with the reason and where to retry; the page links there for admins.
    client = connected[0]
    [alert] = lever_alerts(client)
    assert alert["level"] == "error" and "1 write to Lever failed" in alert["message"]
    assert "Lever stage move: 1" in alert["message"] and "503" in alert["message"]
    assert alert["link"] == "/settings/work"
    assert 'href="/settings/work">Work needing attention (Retry)' in client.get("/settings/integrations").get_data(as_text=True)
    assert retry_failed(advance_candidate, StageMove.id == move.id) == 1  # the admin's Retry
    run_inline_jobs()
    assert lever_alerts(client) == []
    assert sandbox.admin.state(ACCOUNT)["opportunities"][opp] == DONE_STAGE
    db.session.expire_all()
    assert db.session.get(StageMove, move.id).status == "done"
    assert advance_candidate(move.id)["outcome"] == "already_done"
    moved = [r for r in lever_writes(sandbox) if r["path"].endswith("/stage") and r["status"] < 300]
    assert len(moved) == 1


def test_settings_off_means_no_tags(connected, sandbox):
    from hub.settings import set_setting

    client, conn = connected
    set_setting(conn.organization_id, "wecp_lever", "tag_invited", False)
    set_setting(conn.organization_id, "wecp_lever", "tag_results", False)
    db.session.commit()
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    move(sandbox, client, conn, opp)
    take_test(invitations()[0], correct=False)
    assert [r for r in lever_writes(sandbox) if "Tags" in r["path"]] == []
    assert len(sandbox.admin.notes(ACCOUNT)) == 1


def test_admin_changes_the_settings_on_the_activity_page(connected):
    from hub.settings import get_setting

    client, conn = connected
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert "Tag invited candidates" in page
    token = csrf_token(client, "/integrations/wecp_lever/")
    response = client.post("/integrations/wecp_lever/settings", data={
        "csrf_token": token, "tag_results": "on", "advance_on_pass_stage": "offer"})
    assert response.status_code == 302
    org = conn.organization_id
    assert get_setting(org, "wecp_lever", "tag_invited") is False
    assert get_setting(org, "wecp_lever", "tag_results") is True
    assert get_setting(org, "wecp_lever", "advance_on_pass_stage") == "offer"
    # The stage is picked from Lever's list, by name; the saved one is selected.
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert '<select id="setting-advance_on_pass_stage"' in page
    assert '<option value="offer" selected>Offer</option>' in page and ">Never</option>" in page


def test_a_stage_lever_does_not_have_is_refused_on_save(connected):
    """A stage name typed as if it were an id used to be saved, then every pass failed later."""
    from hub.settings import get_setting

    client, conn = connected
    token = csrf_token(client, "/integrations/wecp_lever/")
    response = client.post("/integrations/wecp_lever/settings", follow_redirects=True, data={
        "csrf_token": token, "tag_results": "on", "advance_on_pass_stage": "Offer"})
    page = response.get_data(as_text=True)
    assert "Settings not saved" in page and "is not one of Lever&#39;s stages" in page
    org = conn.organization_id
    assert get_setting(org, "wecp_lever", "advance_on_pass_stage") == ""
    assert get_setting(org, "wecp_lever", "tag_invited") is True  # nothing of the form was saved


@pytest.mark.parametrize("low, high, said", [
    ("70", "50", "the “needs review” band ends (50 %) below where it starts (70 %)"),
    ("50", "170", "the “needs review” band is in percent, from 0 to 100"),
])
def test_an_upside_down_review_band_is_refused_on_save(connected, low, high, said):
    """Issue #40, 14: "70 → 50" was saved, and no candidate was ever tagged for review."""
    from flask import g

    from hub.settings import get_setting

    client, conn = connected
    token = csrf_token(client, "/integrations/wecp_lever/")
    response = client.post("/integrations/wecp_lever/settings", follow_redirects=True, data={
        "csrf_token": token, "review_from": low, "review_to": high, "advance_on_pass_stage": ""})
    page = response.get_data(as_text=True)
    assert "Settings not saved" in page and said in page
    assert get_setting(conn.organization_id, "wecp_lever", "review_from") == 0
    ok = client.post("/integrations/wecp_lever/settings", follow_redirects=True, data={
        "csrf_token": token, "review_from": "50", "review_to": "70", "advance_on_pass_stage": ""})
    assert "Settings saved." in ok.get_data(as_text=True)
    g.pop("hub_settings", None)  # this test's own copy of the settings, read before the save
    assert (get_setting(conn.organization_id, "wecp_lever", "review_from"),
            get_setting(conn.organization_id, "wecp_lever", "review_to")) == (50, 70)


def test_a_saved_stage_lever_does_not_know_is_shown_as_a_problem(connected):
    from hub.settings import set_setting

    client, conn = connected
    set_setting(conn.organization_id, "wecp_lever", "advance_on_pass_stage", "Offer")  # saved before the picker
    db.session.commit()
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert "is not one of Lever&#39;s stages, so nobody is moved" in page
    assert '<option value="Offer" selected>Not a Lever stage: Offer</option>' in page


def test_the_stage_setting_is_kept_while_lever_cannot_be_read(connected, sandbox):
    from hub.extensions import get_redis
    from hub.settings import get_setting

    client, conn = connected
    get_redis().delete(f"hub:cache:wecp_lever:{conn.id}:stages")  # not read yet
    sandbox.admin.add_fault(route="^/v1/stages", status=503, error_rate=1)
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert "stages could not be read just now" in page
    token = csrf_token(client, "/integrations/wecp_lever/")
    response = client.post("/integrations/wecp_lever/settings", follow_redirects=True, data={
        "csrf_token": token, "advance_on_pass_stage": "offer"})
    assert "Settings not saved" in response.get_data(as_text=True)
    assert get_setting(conn.organization_id, "wecp_lever", "advance_on_pass_stage") == ""


def _age_due(rows, seconds=300):
    from datetime import timedelta

    for row in rows:
        row.due_at -= timedelta(seconds=seconds)
    db.session.commit()


def test_a_tag_whose_job_was_lost_is_added_once_by_the_sweeper_and_a_failed_one_by_retry(connected, sandbox):
    from hub.outbox import sweep
    from plugins.wecp_lever.flow import tag_opportunity
    from plugins.wecp_lever.models import Tag

    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    since = sandbox.admin.requests_log()[-1]["seq"]
    sandbox.admin.add_fault(route="/addTags", error_rate=1.0, status=500)  # Lever down for tags
    move_expecting_failure(sandbox, client, conn, opp)
    assert len(invitations()) == 1  # the invitation does not wait for the tag
    [tag] = db.session.scalars(db.select(Tag)).all()
    assert (tag.status, tag.tags) == ("failed", ["WeCP: invited"])
    # The author is chosen when the tag is written, from the application's ids kept on the row.
    assert tag.perform_as is None and tag.application
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert "Tags waiting" in page and "WeCP: invited" in page
    assert f"/integrations/wecp_lever/tags/{tag.id}/retry" in page  # the admin sees it and can retry
    sandbox.admin.clear_faults()
    between_retries(tag)  # as a worker leaves it when Redis loses the job between two retries
    assert sweep()["enqueued"] == 0  # too young: its own job may still run
    _age_due([tag])
    assert sweep()["enqueued"] == 1
    db.session.expire_all()
    assert db.session.get(Tag, tag.id).status == "done"
    added = [r for r in lever_writes(sandbox, since) if r["path"].endswith("/addTags") and r["status"] < 300]
    assert len(added) == 1 and added[0]["perform_as"] == OLIVIA
    assert sweep()["enqueued"] == 0
    assert tag_opportunity(tag.id)["outcome"] == "already_done"
    assert "Tags waiting" not in client.get("/integrations/wecp_lever/").get_data(as_text=True)


def test_a_note_whose_job_was_lost_is_posted_once_by_the_sweeper(connected, sandbox):
    from hub.outbox import sweep
    from plugins.wecp_lever.models import Tag

    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    move(sandbox, client, conn, opp)
    sandbox.admin.add_fault(route="/notes", error_rate=1.0, status=503)
    with pytest.raises(LeverError):
        take_test(invitations()[0], correct=True)  # inline: the note job's failure surfaces here
    db.session.rollback()
    [note] = db.session.scalars(db.select(Note)).all()
    assert note.status == "failed" and sandbox.admin.notes(ACCOUNT) == []
    sandbox.admin.clear_faults()
    between_retries(note)
    _age_due([note])
    assert sweep()["enqueued"] == 1
    db.session.expire_all()
    assert db.session.get(Note, note.id).status == "done"
    assert len(sandbox.admin.notes(ACCOUNT)) == 1
    result_tags = db.session.scalar(db.select(Tag).filter_by(key=f"result:{note.result_id}"))
    assert result_tags.tags == ["WeCP: completed", "WeCP: passed"] and result_tags.status == "done"
    assert sweep()["enqueued"] == 0

ODD_IDS = st.one_of(
    # A huge integer in digits has the shape of a Lever id (slugs may be digits); the hub's own
    # integer routes are fuzzed with those (tests/security/test_input.py).
    st.sampled_from(["../postings", "%2e%2e%2f", "a/b", "?x=", "x#y", "opp id", "é", "\u202e", "",
                     "-" + "a" * 10, "a" * 65, "..", ".", "1" * 70]),
    st.text(min_size=1, max_size=80).filter(lambda t: not LEVER_ID_SHAPE.fullmatch(t)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(odd=ODD_IDS)
def test_a_signed_delivery_with_an_id_not_of_lever_s_shape_is_refused_and_calls_nothing(connected, sandbox, odd):
    """Lever signs only token + triggeredAt, never data: an odd id there is refused, stored with
    its reason, never retried and never sent to Lever (docs/providers/lever.md#ids)."""
    client, conn = connected
    if not db.session.scalar(db.select(PostingLink)):
        link(client, make_test(conn.organization_id))
    since = sandbox.admin.requests_log()[-1]["seq"]
    body = sign_lever_delivery(conn.webhook_secret, {
        "event": "candidateStageChange",
        "data": {"opportunityId": odd, "candidateId": odd, "fromStageId": NEW, "toStageId": ASSESSMENT}},
        token=uuid.uuid4().hex)
    response = client.post(f"/webhooks/wecp_lever/{conn.endpoint_id}", data=json.dumps(body),
                           content_type="application/json")
    assert response.status_code == 200
    row = db.session.scalar(db.select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(1))
    db.session.refresh(row)
    assert (row.status, row.outcome) == ("skipped", "skipped") and row.summary.startswith("refused: ")
    logged = db.session.scalar(db.select(ActivityLine).filter_by(delivery_id=row.id))
    assert logged is not None and logged.message == row.summary  # visible in the activity log
    assert [r["path"] for r in sandbox.admin.requests_log() if r["seq"] > since] == []


@pytest.mark.parametrize("email", ["ada@example.com\r\nBcc: all@example.com", "ada@example.com, bob@example.com",
                                   "<b>ada</b>@example.com", "ada @example.com",
                                   # Issue #39, 8: invisible, bidi-override and full-width characters.
                                   "zw\u200b@example.com", "a@\u202eevil.example", "\uff41dmin@example.com"])
def test_a_candidate_with_an_invalid_email_never_vanishes(connected_on_each_database, sandbox, email):
    """No invitation, a visible skip with its reason, one note in Lever saying what to fix, and no
    "invited" tag: on PostgreSQL and SQLite alike."""
    client, conn = connected_on_each_database
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox, email=email, name="Ada Invalid")
    since = sandbox.admin.requests_log()[-1]["seq"]
    move(sandbox, client, conn, opp)
    deliver(client, conn, opp, ASSESSMENT)  # twice: still one note
    assert invitations() == [] and db.session.scalars(db.select(OutboundEmail)).all() == []
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert "Ada Invalid" in page and "no usable email address" in page
    notes = sandbox.admin.notes(ACCOUNT)
    assert len(notes) == 1 and "email" in notes[0]["value"].lower()
    assert [r for r in lever_writes(sandbox, since) if r["path"].endswith("/addTags")] == []


def test_a_test_page_says_when_the_lever_connection_is_revoked(connected):
    """On the next page view after Lever refused the tokens, not only on the Integrations card."""
    from hub.connections import mark_revoked

    client, conn = connected
    test = make_test(conn.organization_id)
    assert "lever-state" not in client.get(f"/tests/{test.id}").get_data(as_text=True)
    mark_revoked(conn.id, "Lever refuses the connection's tokens (access revoked in Lever?)")
    db.session.expire_all()
    page = client.get(f"/tests/{test.id}").get_data(as_text=True)
    assert "The Lever connection was revoked (Lever refuses the connection&#39;s tokens" in page
    assert "not invited and scores are not written to Lever" in page and 'href="/settings/integrations"' in page


def test_the_activity_log_reads_as_a_recruiter_reads_it(connected, sandbox):
    """Names instead of ids, the posting and stage, plain words, links to Lever and the report,
    an email's fate only on its invitation, the organization's queue, and filters."""
    client, conn = connected
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox)
    move(sandbox, client, conn, opp)
    take_test(invitations()[0], correct=True)
    page = client.get("/integrations/wecp_lever/").get_data(as_text=True)
    assert f">{opp}<" not in page and page.count(">Ada Lovelace</a>") == 4  # invited, started, completed, note
    assert page.count("Backend Engineer · Assessment") == 4
    for label in ("Invitation", "Test started", "Test completed", "Result note"):
        assert f'<td data-label="What">{label}</td>' in page
    assert f'href="{sandbox.url}/candidates/{opp}"' in page
    assert re.search(r'href="http://[^"]+/r/[A-Za-z0-9_-]+"[^>]*>Report</a>', page)
    assert page.count("Email: sent") == 1  # on the invitation, not on the note
    assert "Resend invitation</button>" not in page  # completed: nothing to send again (#40, 5)
    # The test's Invitations table: the source by name and the job, no deadline once done (#40, 9).
    invitation = invitations()[0]
    table = client.get(f"/tests/{invitation.test_id}").get_data(as_text=True).split('class="invitations"')[1]
    assert '<td>Lever<br><span class="hint">Backend Engineer</span></td>' in table
    assert "wecp_lever" not in table and opp not in table and "done " not in table
    assert ">Completed</span><br><span class=\"hint\">" in table
    assert 'data-count="failed">0<' in page and 'data-count="queued">0<' in page

    def shown(query):
        text = client.get(f"/integrations/wecp_lever/?{query}").get_data(as_text=True)
        return text.count('<td data-label="What">')
    assert shown(f"job={BACKEND}") == 4
    # A posting nobody was invited from is not offered, and one not offered is ignored (the filter
    # is off): only the organization's own postings reach the query.
    assert f'value="{FRONTEND}"' not in page and shown(f"job={FRONTEND}") == 4
    assert shown("status=ok") == 4 and shown("status=failed") == 0
    assert shown("since=2000-01-01&until=2000-01-02") == 0 and shown("since=2000-01-01") == 4
    assert shown("status=<script>&since=not-a-date") == 4  # not understood: that filter is off
    assert shown("job=../x%27%20OR%201=1") == 4  # not one of the postings: never reaches the query
    assert "Nothing matches these filters." in client.get("/integrations/wecp_lever/?status=failed").get_data(as_text=True)


def _invited(client, conn, sandbox, **candidate):
    link(client, make_test(conn.organization_id))
    opp = new_candidate(sandbox, **candidate)
    move(sandbox, client, conn, opp)
    [invitation] = invitations()
    return opp, invitation


def test_a_candidate_who_has_not_started_is_reminded_once_before_the_deadline(connected, sandbox):
    from datetime import timedelta

    from hub.settings import set_setting
    from plugins.wecp_lever.flow import remind_candidates

    client, conn = connected
    opp, invitation = _invited(client, conn, sandbox)
    assert remind_candidates(conn.id)["count"] == 0  # seven days left: too early
    invitation.created_at -= timedelta(days=6, hours=12)
    invitation.expires_at = invitation.created_at + timedelta(days=7)  # 12 hours left
    db.session.commit()
    assert remind_candidates(conn.id)["count"] == 1
    assert remind_candidates(conn.id)["count"] == 0  # once, however often the job runs
    run_inline_jobs()
    [reminder] = db.session.scalars(db.select(OutboundEmail).where(
        OutboundEmail.idempotency_key == f"invitation:{invitation.id}:reminder")).all()
    assert reminder.subject.startswith("Reminder: ") and reminder.to == "ada@example.com"
    assert "not started" in reminder.text and invitation_url(invitation.id) in reminder.text
    [line] = db.session.scalars(db.select(ActivityLine).filter_by(kind="email", subject_ref=opp)).all()
    assert line.message.startswith("reminded ada@example.com")
    # Off for the organization: nobody is reminded.
    set_setting(conn.organization_id, "wecp_lever", "reminder_hours", 0)
    db.session.commit()
    assert remind_candidates(conn.id)["outcome"] == "skipped"


def test_an_invitation_sent_with_less_time_left_than_the_reminder_or_already_started_is_not_reminded(
        connected, sandbox):
    from datetime import timedelta

    from plugins.wecp_lever.flow import remind_candidates

    client, conn = connected
    _, invitation = _invited(client, conn, sandbox)
    invitation.expires_at = invitation.created_at + timedelta(hours=20)  # sent with 20 hours to go
    db.session.commit()
    assert remind_candidates(conn.id)["count"] == 0
    invitation.created_at -= timedelta(days=2)
    invitation.status = "started"
    db.session.commit()
    assert remind_candidates(conn.id)["count"] == 0


def test_an_expired_invitation_is_recorded_and_tagged_once(connected, sandbox):
    from datetime import timedelta

    from hub.assessments.services import expire_invitations
    from plugins.wecp_lever.models import Tag

    client, conn = connected
    opp, invitation = _invited(client, conn, sandbox)
    since = sandbox.admin.requests_log()[-1]["seq"]
    invitation.expires_at = invitation.created_at - timedelta(seconds=1)
    db.session.commit()
    assert expire_invitations() == {"expired": 1}
    assert expire_invitations() == {"expired": 0}
    run_inline_jobs()
    [line] = db.session.scalars(db.select(ActivityLine).filter_by(status="expired")).all()
    assert line.subject_ref == opp and line.subject_name == "Ada Lovelace" and "expired" in line.message
    [tag] = db.session.scalars(db.select(Tag).filter_by(key=f"expired:{invitation.id}")).all()
    assert tag.status == "done" and tag.tags == ["WeCP: expired"]
    added = [r for r in lever_writes(sandbox, since) if r["path"].endswith("/addTags")]
    assert len(added) == 1
    assert "Expired" in client.get("/integrations/wecp_lever/").get_data(as_text=True)


def test_status_tags_are_each_the_organization_s_choice_started_and_needs_review(connected, sandbox):
    from hub.assessments.services import start_invitation
    from hub.settings import set_setting
    from plugins.wecp_lever.models import Tag

    client, conn = connected
    org = conn.organization_id
    opp, invitation = _invited(client, conn, sandbox)
    token = invitation_url(invitation.id).rsplit("/", 1)[1]
    start_invitation(token)  # "started" is off by default: a line in the log, no tag
    run_inline_jobs()
    assert db.session.scalars(db.select(Tag).filter(Tag.key.like("started:%"))).all() == []
    assert db.session.scalars(db.select(ActivityLine).filter_by(kind="start", subject_ref=opp)).all()

    set_setting(org, "wecp_lever", "tag_started", True)
    set_setting(org, "wecp_lever", "review_from", 0)
    set_setting(org, "wecp_lever", "review_to", 50)
    db.session.commit()
    other = new_candidate(sandbox, email="grace@example.com", name="Grace Hopper")
    move(sandbox, client, conn, other)
    second = next(i for i in invitations() if i.source_ref == other)
    take_test(second, correct=False)  # starts (tagged), then 0 %: in the review band
    from plugins.wecp_lever.lever import LeverClient

    tags = set(LeverClient(conn.id).get_opportunity(other)["tags"])
    assert {"WeCP: started", "WeCP: completed", "WeCP: failed", "WeCP: needs review"} <= tags
    assert "WeCP: started" not in LeverClient(conn.id).get_opportunity(opp)["tags"]
    assert start_invitation(token) and len(db.session.scalars(
        db.select(Tag).filter(Tag.key.like("started:%"))).all()) == 1  # once per invitation


def test_a_score_corrected_after_its_note_posts_one_superseding_note(connected, sandbox):
    """Lever notes cannot be edited: an admin's re-grade (after fixing the answer key) adds one
    correction note, exactly once under a rerun; a re-grade that changes nothing adds none."""
    from hub.assessments.schemas import AssessmentTestSchema
    from hub.assessments.services import save_test

    client, conn = connected
    test = make_test(conn.organization_id)
    link(client, test)
    opp = new_candidate(sandbox)
    move(sandbox, client, conn, opp)
    result = take_test(invitations()[0], correct=True)
    assert len(sandbox.admin.notes(ACCOUNT)) == 1 and "100%" in sandbox.admin.notes(ACCOUNT)[0]["value"]
    token = csrf_token(client, f"/results/{result.id}")
    assert "Re-grade" in client.get(f"/results/{result.id}").get_data(as_text=True)
    client.post(f"/results/{result.id}/regrade", data={"csrf_token": token})
    run_inline_jobs()
    assert len(sandbox.admin.notes(ACCOUNT)) == 1  # unchanged score: nothing to correct
    # The answer key of the second question was wrong: option 1 is right.
    save_test(conn.organization_id, AssessmentTestSchema().load({
        "title": test.title, "description": "", "pass_mark": 50, "time_limit_minutes": 30, "valid_days": 7,
        "questions": [{"text": "Q0", "kind": "single", "options": ["right", "wrong"], "correct": [0]},
                      {"text": "Q1", "kind": "single", "options": ["right", "wrong"], "correct": [1]}]}), test=test)
    db.session.commit()
    page = client.post(f"/results/{result.id}/regrade", data={"csrf_token": token}, follow_redirects=True)
    assert "the score is now 1/2 (50%)" in page.get_data(as_text=True)
    run_inline_jobs()
    notes = [n["value"] for n in sandbox.admin.notes(ACCOUNT)]
    assert len(notes) == 2 and "Corrected score: 1 / 2 (50%) — Passed" in notes[1]
    assert "replaces the score in WeCP's earlier note" in notes[1] and "/r/" in notes[1]
    # A rerun of the correction after a crash finds it by its own marker, not by the first note.
    correction = db.session.scalar(db.select(Note).filter(Note.key.like("regrade:%")))
    correction.status, correction.lease_until = "running", correction.finished_at.replace(year=2000)
    db.session.commit()
    assert post_note(correction.id)["found"] is True
    assert len(sandbox.admin.notes(ACCOUNT)) == 2


# --- withdrawal: archived or gone from the posting before starting (#30 item 4) ----------------

def deliver_archive(client, conn, opportunity_id, token=None):
    """What Lever sends after an archive or unarchive, signed with that webhook's own token."""
    from plugins.wecp_lever.models import Webhook

    hook = db.session.scalar(db.select(Webhook).filter_by(connection_id=conn.id, event="candidateArchiveChange"))
    body = sign_lever_delivery(hook.secret, {
        "event": "candidateArchiveChange",
        "data": {"opportunityId": opportunity_id, "candidateId": opportunity_id, "contactId": None,
                 "fromArchived": None, "toArchived": {"archivedAt": 1, "reason": "withdrew"}}}, token=token)
    return client.post(f"/webhooks/wecp_lever/{conn.endpoint_id}", data=json.dumps(body),
                       content_type="application/json")


def lever_calls(sandbox, since):
    return [r for r in sandbox.admin.requests_log(since) if r["path"].startswith("/v1/")]


def test_archiving_a_candidate_before_they_start_withdraws_the_invitation_once(connected, sandbox):
    client, conn = connected
    opp, invitation = _invited(client, conn, sandbox)
    token = invitation_url(invitation.id).rsplit("/", 1)[1]
    sandbox.admin.patch_opportunity(opp, archived={"archivedAt": 1, "reason": "withdrew"})
    since = sandbox.admin.requests_log()[-1]["seq"]
    assert deliver_archive(client, conn, opp, token="archive-1").status_code == 200
    assert deliver_archive(client, conn, opp, token="archive-1").status_code == 200  # Lever's retry
    assert deliver_archive(client, conn, opp, token="archive-2").status_code == 200  # a second event
    [invitation] = invitations()
    assert invitation.status == "cancelled" and invitation.cancelled_at is not None
    # Lever is asked once (the event's data is not signed), and nothing is written there; the
    # second event finds nothing waiting and asks nothing.
    assert [r["path"] for r in lever_calls(sandbox, since)] == [f"/v1/opportunities/{opp}"]
    rows = db.session.scalars(db.select(WebhookDelivery).filter_by(event="candidateArchiveChange")
                              .order_by(WebhookDelivery.id)).all()
    assert [r.outcome for r in rows] == ["withdrawn", "skipped"]
    assert rows[0].summary == "1 invitation(s) withdrawn: the candidate was archived in Lever"
    assert "no invitation of this candidate waits to be started" in rows[1].summary
    [line] = db.session.scalars(db.select(ActivityLine).filter_by(status="cancelled")).all()
    assert line.subject_ref == opp and line.subject_name == "Ada Lovelace"
    assert "withdrawn before the candidate started: the candidate was archived in Lever" in line.message
    # The candidate's link says so kindly; Start is refused the same way.
    page = client.get(f"/t/{token}")
    assert page.status_code == 410 and "This invitation was withdrawn" in page.get_data(as_text=True)
    assert "Start" not in page.get_data(as_text=True)
    from hub.assessments.services import InvitationCancelled
    with pytest.raises(InvitationCancelled):
        start_invitation(token)
    assert "Withdrawn" in client.get("/integrations/wecp_lever/").get_data(as_text=True)


def test_an_archive_event_lever_does_not_confirm_or_for_someone_not_invited_changes_nothing(connected, sandbox):
    client, conn = connected
    opp, invitation = _invited(client, conn, sandbox)
    other = new_candidate(sandbox, email="grace@example.com", name="Grace Hopper")
    since = sandbox.admin.requests_log()[-1]["seq"]
    deliver_archive(client, conn, other)  # never invited: Lever is not even asked
    assert lever_calls(sandbox, since) == []
    deliver_archive(client, conn, opp)  # signed, but Lever says the candidate is not archived
    [invitation] = invitations()
    assert invitation.status == "invited"
    outcomes = [r.outcome for r in db.session.scalars(
        db.select(WebhookDelivery).filter_by(event="candidateArchiveChange").order_by(WebhookDelivery.id))]
    assert outcomes == ["skipped", "skipped"]
    assert db.session.scalars(db.select(ActivityLine).filter_by(status="cancelled")).all() == []


def test_a_candidate_who_started_is_not_withdrawn(connected, sandbox):
    client, conn = connected
    opp, invitation = _invited(client, conn, sandbox)
    start_invitation(invitation_url(invitation.id).rsplit("/", 1)[1])
    db.session.commit()
    sandbox.admin.patch_opportunity(opp, archived={"archivedAt": 1, "reason": "withdrew"})
    since = sandbox.admin.requests_log()[-1]["seq"]
    deliver_archive(client, conn, opp)
    [invitation] = invitations()
    assert invitation.status == "started"
    assert lever_calls(sandbox, since) == []  # nothing waits to be started: nothing to check


def test_leaving_the_posting_before_starting_withdraws_but_a_move_within_it_does_not(connected, sandbox):
    client, conn = connected
    opp, invitation = _invited(client, conn, sandbox)
    move(sandbox, client, conn, opp, stage=SCREEN)  # onwards in the same posting
    [invitation] = invitations()
    assert invitation.status == "invited"
    sandbox.admin.patch_opportunity(opp, posting_id=FRONTEND)  # the application moves elsewhere
    move(sandbox, client, conn, opp, stage=NEW)
    [invitation] = invitations()
    assert invitation.status == "cancelled"
    [line] = db.session.scalars(db.select(ActivityLine).filter_by(status="cancelled")).all()
    assert "the candidate left the job posting in Lever" in line.message


def test_after_a_withdrawal_a_new_move_into_the_stage_invites_again(connected, sandbox):
    client, conn = connected
    opp, first = _invited(client, conn, sandbox)
    sandbox.admin.patch_opportunity(opp, archived={"archivedAt": 1, "reason": "withdrew"})
    deliver_archive(client, conn, opp)
    sandbox.admin.patch_opportunity(opp, archived=None)  # unarchived: nothing comes back by itself
    assert [i.status for i in invitations()] == ["cancelled"]
    move(sandbox, client, conn, opp, stage=NEW)
    time.sleep(0.002)  # a later move has a later time in Lever
    move(sandbox, client, conn, opp)
    statuses = sorted((i.generation, i.status) for i in invitations())
    assert statuses == [(0, "cancelled"), (1, "invited")]


def test_the_invitation_names_the_posting_as_the_job(connected, sandbox):
    client, conn = connected
    _, invitation = _invited(client, conn, sandbox)
    link = db.session.scalar(db.select(PostingLink))
    assert link.posting_text and invitation.job_title == link.posting_text
    email = db.session.scalar(db.select(OutboundEmail).filter_by(idempotency_key=f"invitation:{invitation.id}"))
    assert f"your assessment for {link.posting_text}, “Backend screen”" in email.subject
