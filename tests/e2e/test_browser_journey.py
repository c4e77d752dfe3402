"""The whole product in a real browser: connect, link, move, email, test, note in Lever."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.steps import LEVER_ACCOUNT, connect_and_link, move_in_lever, take_test
from tests.e2e.steps import SAMPLE_ANSWERS as ANSWERS
from tests.stack import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

POSTING_ID, POSTING = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9", "Backend Engineer"
POSTING_OWNER = "b1f2c3d4-0000-4000-8000-000000000001"  # Olivia, in the sandbox's seed
CANDIDATE, CANDIDATE_EMAIL = "Radia Perlman", "radia.perlman@example.com"


def test_candidate_moved_in_lever_takes_the_test_and_the_score_lands_in_lever(
        page, stack, admin_account):
    title = connect_and_link(page, stack, admin_account, POSTING)

    # A candidate applies after the link exists, then a recruiter moves them in Lever.
    [opportunity] = stack.sandbox.admin.add_candidates(
        LEVER_ACCOUNT, POSTING_ID, "applicant-new",
        candidates=[{"name": CANDIDATE, "emails": [CANDIDATE_EMAIL]}])
    move_in_lever(page, stack.sandbox.url, POSTING_ID, CANDIDATE, "Assessment")

    invitation = stack.smtp.wait_for(lambda m: CANDIDATE_EMAIL in m["To"], timeout=30)
    assert title in invitation["Subject"] or title in invitation.get_body(("plain",)).get_content()
    url = re.search(r"http://\S+/t/\S+", invitation.get_body(("plain",)).get_content()).group(0)
    assert url.startswith(stack.hub_url)
    take_test(page, url, ANSWERS)

    # A worker writes the score as a note, on behalf of the posting's owner.
    def the_note():
        notes = [n for n in stack.sandbox.admin.notes(LEVER_ACCOUNT)
                 if n["opportunity_id"] == opportunity]
        return notes if notes else None
    [note] = wait_until(the_note, 30, 0.2, "the result note in Lever")
    assert "View a detailed report on WeCP: " + stack.hub_url in note["value"]
    assert "100%" in note["value"]
    assert note["perform_as"] == POSTING_OWNER
    # And a recruiter sees it on the candidate's page in Lever.
    page.goto(f"{stack.sandbox.url}/accounts/{LEVER_ACCOUNT}/opportunities/{opportunity}")
    expect(page.get_by_text(re.compile("View a detailed report on WeCP"))).to_be_visible()
    assert len(stack.smtp.messages) == 1  # one invitation, however many deliveries

    # The report link in the note opens the report; the admin sees the candidate's activity.
    report = re.search(r"View a detailed report on WeCP: (\S+)", note["value"]).group(1)
    page.goto(report)
    expect(page.get_by_text(title).first).to_be_visible()
    expect(page.get_by_text("Passed").first).to_be_visible()
    page.goto(stack.hub_url + "/integrations/wecp_lever/")
    expect(page.get_by_text(CANDIDATE).first).to_be_visible()
    expect(page.get_by_text(re.compile("posted as the posting's owner"))).to_be_visible()

    # Every job the journey put in RQ (what the operators' dashboard prints unescaped) holds
    # ids, keys, numbers and codes only: none of the candidate's, the test's or Lever's text.
    stored = stack.query(rq_jobs_as_text)
    assert len(stored) >= 5, stored.keys()
    texts = {CANDIDATE, CANDIDATE_EMAIL, title, POSTING, "View a detailed report", "Radia"}
    for job_id, (args, text) in stored.items():
        assert all(is_id_or_key(arg) for arg in args), (job_id, args)
        assert not [t for t in texts if t.lower() in text.lower()], (job_id, text[:500])


def is_id_or_key(value) -> bool:
    from hub.jobs import JOB_ARGUMENT

    return isinstance(value, int) and not isinstance(value, bool) or \
        isinstance(value, str) and JOB_ARGUMENT.fullmatch(value) is not None


def rq_jobs_as_text() -> dict[str, tuple[list, str]]:
    """Every RQ job in Redis: its arguments, and all its text (description, results, errors)."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from hub.extensions import get_redis

    redis = get_redis()
    found = {}
    for key in redis.scan_iter("rq:job:*"):
        job_id = key.decode().split(":", 2)[2]
        if ":" in job_id:  # rq:job:<id>:dependents and the like
            continue
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        parts = [job.description or "", repr(job.kwargs), str(job.exc_info or "")]
        parts += [f"{r.return_value!r} {r.exc_string or ''}" for r in job.results()]
        found[job_id] = (list(job.args), " ".join(parts))
    return found
