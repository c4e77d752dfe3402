"""The activity log is a hub service (#41, 4): every plugin writes lines, the hub reads, fills in
and renders them, asking the plugin only for what it alone knows."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from hub import activity
from hub.activity import ActivityLine, Filters, record
from hub.extensions import db
from hub.models import utcnow
from hub.plugin import ActivityContext
from hub.registry import get_plugin
from tests.conftest import sign_in


@pytest.fixture
def partner(app, monkeypatch):
    """The partner example, with a job filter and a profile link of its ATS."""
    plugin = get_plugin("partner_example")
    cls = type(plugin)
    monkeypatch.setattr(cls, "activity_kinds", {"invitation": "Test sent"}, raising=False)
    monkeypatch.setattr(cls, "activity_jobs", lambda self, org: [("job-1", "Backend Engineer")])
    monkeypatch.setattr(cls, "activity_job_subjects",
                        lambda self, org, job: sa.select(sa.literal("cand-1")) if job == "job-1" else None)
    monkeypatch.setattr(cls, "activity_context", lambda self, org, refs: {
        ref: ActivityContext(job="Backend Engineer", stage="Assessment", profile_url=f"https://ats.example/{ref}")
        for ref in refs if ref == "cand-1"})
    return plugin


def test_lines_are_the_organizations_and_the_plugins_own_newest_first(app, make_user, partner):
    mine, theirs = make_user(org="Acme"), make_user(org="Globex")
    record("partner_example", "invitation", "ok", "Sent.", organization_id=mine.organization_id,
           subject_ref="cand-1", subject_name="Ada Lovelace")
    record("partner_example", "note", "failed", "Refused.", organization_id=mine.organization_id,
           subject_ref="cand-1")  # no name of its own: taken from the line above
    record("partner_example", "note", "ok", "Globex's.", organization_id=theirs.organization_id, subject_ref="cand-1")
    record("tiny_example", "note", "ok", "Another plugin's.", organization_id=mine.organization_id, subject_ref="cand-1")
    db.session.commit()
    shown = activity.lines(mine.organization_id, partner, Filters())
    assert [(line["row"].message, line["candidate"], line["what"], line["status"]) for line in shown] == [
        ("Refused.", "Ada Lovelace", "Result note", "Failed"), ("Sent.", "Ada Lovelace", "Test sent", "Done")]
    assert shown[0]["job"] == "Backend Engineer" and shown[0]["profile_url"] == "https://ats.example/cand-1"


def test_filters_take_only_what_they_understand(app, make_user, partner):
    user = make_user(org="Acme")
    old = record("partner_example", "note", "ok", "Old.", organization_id=user.organization_id, subject_ref="cand-2")
    old.created_at = utcnow() - timedelta(days=10)
    record("partner_example", "note", "failed", "New.", organization_id=user.organization_id, subject_ref="cand-1")
    db.session.commit()
    jobs = partner.activity_jobs(user.organization_id)

    def messages(**args):
        return [line["row"].message for line in activity.lines(
            user.organization_id, partner, Filters.from_args(args, jobs))]

    assert messages(status="failed") == ["New."] and messages(status="bogus") == ["New.", "Old."]
    assert messages(job="job-1") == ["New."]
    assert messages(job="' OR 1=1 --") == ["New.", "Old."]  # not one of the plugin's jobs: off
    since = (utcnow() - timedelta(days=1)).strftime("%Y-%m-%d")
    assert messages(since=since) == ["New."] and messages(until="9999-12-31") == ["New.", "Old."]
    assert Filters.from_args({"since": "not a day"}).since is None


def test_the_hub_renders_the_log_of_a_plugin_without_a_page(app, make_user, partner):
    user = make_user(org="Acme", role="member")
    record("partner_example", "invitation", "ok", "Sent as asked.", organization_id=user.organization_id,
           subject_ref="cand-1", subject_name="Ada <Lovelace>")
    db.session.commit()
    client = app.test_client()
    sign_in(client, user.email)
    page = client.get("/settings/integrations/partner_example/activity")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "Sent as asked." in body and "Ada &lt;Lovelace&gt;" in body
    assert 'data-label="Job · stage">Backend Engineer · Assessment' in body
    assert '<option value="job-1" >Backend Engineer</option>' in body or 'value="job-1"' in body
    assert client.get("/settings/integrations/nobody/activity").status_code == 404
    from hub.settings import integration_cards

    with app.test_request_context():  # the card links there, as it links a plugin's own page
        card = next(c for c in integration_cards(user.organization_id) if c["plugin"].key == "partner_example")
    assert card["page"] == "/settings/integrations/partner_example/activity"


def test_a_plugins_durable_work_writes_its_line_with_the_work(app, make_user):
    """The partner example's push records the recruiter's line in its own transaction."""
    import json

    from hub.models import Connection, new_uuid
    from hub.outbox import kind_of, run, schedule
    from tests.plugins.partner_example.work import Push, push

    user = make_user(org="Acme")
    conn = Connection(id=new_uuid(), organization_id=user.organization_id, plugin_key="partner_example",
                      provider="partner", connected_at=utcnow(), setup_completed_at=utcnow())
    conn.credentials = json.dumps({})
    db.session.add(conn)
    row = schedule(push, Push(connection_id=conn.id, ref="cand-9"))
    db.session.commit()
    run(kind_of(push), row.id, here=True)
    [line] = db.session.scalars(db.select(ActivityLine).filter_by(subject_ref="cand-9")).all()
    assert (line.plugin_key, line.kind, line.status, line.organization_id) == \
        ("partner_example", "invitation", "ok", user.organization_id)
    assert isinstance(line.created_at, datetime)
