"""Candidates are told who is asking: the employer and the job, in the email and on the pages;
the email comes from the employer's name and replies reach their recruiter when they gave one."""
from __future__ import annotations

from hub.assessments import services
from hub.extensions import db
from hub.mail import build_message, send_email
from hub.models import Organization
from tests.conftest import csrf_token, sign_in
from tests.hub.assessments.conftest import make_test
from tests.hub.test_mail import smtp_server  # noqa: F401 -- a real SMTP server (aiosmtpd)


def _invite(test, job_title="Backend Engineer", key="who-1"):
    invitation, _ = services.create_invitation(
        test.id, name="Ada Lovelace", email="ada@example.com", source="tiny_example",
        source_ref="opp-1", idempotency_key=key, job_title=job_title)
    db.session.commit()
    return invitation


def test_the_invitation_email_names_the_employer_and_the_job_and_replies_reach_the_recruiter(app, admin, smtp_server):
    app.config["SMTP_URL"] = smtp_server.url
    organization = db.session.get(Organization, admin.organization_id)
    organization.email_sender_name, organization.email_reply_to = "Acme Recruiting", "jobs@acme.example"
    db.session.commit()
    invitation = _invite(make_test(admin.organization_id))
    send_email(services.invitation_email(invitation.id).id)
    [message] = smtp_server.messages
    assert message["Subject"] == "Acme Recruiting: your assessment for Backend Engineer, “Python basics”"
    assert message["From"] == "Acme Recruiting via WeCP <no-reply@wecp.local>"  # our address, their name
    assert message["Reply-To"] == "jobs@acme.example"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Acme Recruiting invites you to take the assessment \"Python basics\" as part of your " \
           "application for Backend Engineer." in text
    assert "Reply to this email: it reaches Acme Recruiting." in text
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in html
    assert "Backend Engineer" in html and "Acme Recruiting" in html


def test_without_a_reply_to_the_email_does_not_ask_for_replies(app, admin):
    invitation = _invite(make_test(admin.organization_id), job_title=None)
    email = services.invitation_email(invitation.id)
    assert email.subject == "Acme: your assessment, “Python basics”"  # the organization's name
    assert email.reply_to is None and "replies to this email are not read" in email.text
    message = build_message(email)
    assert message["Reply-To"] is None and message["From"].startswith("Acme via ")


def test_the_candidate_pages_name_the_employer_and_the_job(app, admin):
    invitation = _invite(make_test(admin.organization_id))
    candidate = app.test_client()
    path = services.invitation_url(invitation.id).removeprefix("http://hub.test")
    intro = candidate.get(path).get_data(as_text=True)
    assert "Acme invites you to an assessment for Backend Engineer" in intro
    assert "<title>Python basics · Acme assessment</title>" in intro
    services.cancel_invitation(invitation.id, "archived")
    db.session.commit()
    closed = candidate.get(path).get_data(as_text=True)
    assert "Acme has withdrawn this invitation" in closed
    assert "contact Acme's hiring team" in closed and "reply to the email" not in closed  # no Reply-To


def test_an_admin_sets_the_sender_name_and_reply_to(app, client, admin, make_user):
    sign_in(client, admin.email)
    page = client.get("/settings/emails")
    assert page.status_code == 200 and "Candidate emails" in page.get_data(as_text=True)
    token = csrf_token(client, "/settings/emails")
    bad = client.post("/settings/emails", data={"csrf_token": token, "sender_name": "Acme Talent",
                                                 "reply_to": "jobs@acme.example\r\nBcc: x@evil.example"})
    assert bad.status_code == 400 and "one email address" in bad.get_data(as_text=True)
    organization = db.session.get(Organization, admin.organization_id)
    assert organization.email_reply_to is None  # nothing saved from a refused form
    saved = client.post("/settings/emails", data={"csrf_token": token, "sender_name": "  Acme   Talent ",
                                                   "reply_to": "jobs@acme.example"})
    assert saved.status_code == 302
    db.session.expire_all()
    organization = db.session.get(Organization, admin.organization_id)
    assert (organization.email_sender_name, organization.email_reply_to) == ("Acme Talent", "jobs@acme.example")
    member = make_user(org="Acme", email="member@acme.example", role="member")
    other = app.test_client()
    sign_in(other, member.email)
    assert other.get("/settings/emails").status_code == 403
