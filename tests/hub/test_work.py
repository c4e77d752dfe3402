"""Settings › Work needing attention: an organization's own failed and paused work, with Retry."""
from __future__ import annotations

import pytest

from hub.auth import create_user
from hub.extensions import db
from hub.inbox import WebhookDelivery
from hub.jobs import get_queue
from hub.mail import OutboundEmail
from hub.outbox import FAILED, PAUSED, PENDING
from tests.conftest import csrf_token, sign_in
from tests.hub.conftest import hub_test_plugins
from tests.workers import make_connection

PAGE = "/settings/work"


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": hub_test_plugins()}


def failed_and_paused(org_name: str) -> dict:
    """An admin of ``org_name``, a failed email, a failed and a paused webhook delivery."""
    marker = f"Secret-of-{org_name.replace(' ', '-')}"
    connection = make_connection(org_name=org_name)
    admin = create_user(org_name, f"admin@{org_name.replace(' ', '-').lower()}.example",
                        "correct horse battery", "admin")
    email = OutboundEmail(organization_id=connection.organization_id, to="cand@example.com",
                          subject="Your test", idempotency_key=f"work:{org_name}", status=FAILED,
                          attempts=5, error=f"SMTPRecipientsRefused: {marker} mailbox")
    email.text = "Hello"
    failed = WebhookDelivery(connection_id=connection.id, plugin_key="tiny_example", event="ping",
                             dedupe_key=f"failed-{org_name}", payload={}, status=FAILED, attempts=3,
                             error=f"{marker} delivery error")
    paused = WebhookDelivery(connection_id=connection.id, plugin_key="tiny_example", event="ping",
                             dedupe_key=f"paused-{org_name}", payload={}, status=PAUSED, attempts=1,
                             error="the connection was revoked")
    db.session.add_all([email, failed, paused])
    db.session.commit()
    return {"admin": admin, "marker": marker, "email": email, "failed": failed, "paused": paused}


def test_an_admin_sees_failed_and_paused_work_of_every_kind_and_nothing_of_another_org(app, client):
    mine, theirs = failed_and_paused("Org A"), failed_and_paused("Org B")
    sign_in(client, mine["admin"].email)
    page = client.get(PAGE).get_data(as_text=True)
    assert "Email" in page and "Webhook delivery" in page
    assert f"{mine['marker']} mailbox" in page and f"{mine['marker']} delivery error" in page
    assert "Waiting for the connection" in page and page.count(">Retry</button>") == 2  # the failed two
    assert theirs["marker"] not in page
    assert theirs["failed"].connection_id not in page and theirs["email"].id not in page


def test_retry_runs_failed_work_again_and_another_orgs_row_is_404(app, client):
    mine, theirs = failed_and_paused("Org A"), failed_and_paused("Org B")
    sign_in(client, mine["admin"].email)
    token = csrf_token(client, PAGE)
    kind = "hub.inbox.process_delivery"
    response = client.post(f"{PAGE}/{kind}/{mine['failed'].id}/retry", data={"csrf_token": token})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(WebhookDelivery, mine["failed"].id).status == PENDING
    assert any(str(mine["failed"].id) in job_id for job_id in get_queue("webhooks").job_ids)
    # Another organization's row, an unknown kind, a malformed or huge id: 404, nothing changes.
    for path in (f"{kind}/{theirs['failed'].id}", f"hub.mail.send_email/{theirs['email'].id}",
                 f"nope/{mine['failed'].id}", f"{kind}/abc", f"{kind}/{2**64}", f"{kind}/-1", f"{kind}/²"):
        assert client.post(f"{PAGE}/{path}/retry", data={"csrf_token": token}).status_code == 404, path
    db.session.expire_all()
    assert db.session.get(WebhookDelivery, theirs["failed"].id).status == FAILED
    assert db.session.get(OutboundEmail, theirs["email"].id).status == FAILED
    # A paused row is not retried by hand: it resumes with its connection.
    client.post(f"{PAGE}/{kind}/{mine['paused'].id}/retry", data={"csrf_token": token})
    db.session.expire_all()
    assert db.session.get(WebhookDelivery, mine["paused"].id).status == PAUSED


def test_members_are_refused(app, client, make_user):
    failed_and_paused("Acme")
    member = make_user(role="member", email="member@acme.example")
    sign_in(client, member.email)
    assert client.get(PAGE).status_code == 403


def test_nothing_to_attend_to_says_so(app, admin_client):
    page = admin_client.get(PAGE).get_data(as_text=True)
    assert "Nothing failed or paused" in page
