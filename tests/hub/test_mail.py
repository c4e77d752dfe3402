import email
import os
import subprocess
import sys
from email import policy

import pytest
from aiosmtpd.controller import Controller

from hub import mail
from hub.extensions import db
from hub.jobs import get_queue
from hub.mail import OutboundEmail, queue_email, send_email
from hub.outbox import kind_of, sweep
from tests.conftest import TEST_KEYS, sign_in
from tests.services import free_port

JOB_ID = kind_of(send_email).job_id

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.url = f"smtp://127.0.0.1:{controller.port}"
    yield inbox
    controller.stop()


def _queue(key="welcome-1", organization_id=None, **extra):
    """Queue an email in a transaction of its own (queue_email works in the caller's)."""
    email = queue_email("ada@example.com", "Welcome", "Hello Ada", "<p>Hello <b>Ada</b></p>",
                        idempotency_key=key, organization_id=organization_id, **extra)
    db.session.commit()
    return email


def sent(result) -> bool:
    return result == {"outcome": "sent", "status": "done"}


def test_queue_email_is_idempotent_and_bodies_are_encrypted(app):
    first = _queue()
    second = queue_email("other@example.com", "Other", "x", idempotency_key="welcome-1")
    db.session.commit()
    assert second.id == first.id and second.to == "ada@example.com"
    assert db.session.scalar(db.select(db.func.count(OutboundEmail.id))) == 1
    raw = db.session.execute(db.text("SELECT text_ciphertext FROM outbound_email")).scalar()
    assert "Hello Ada" not in raw and first.text == "Hello Ada"
    job = get_queue("mail").fetch_job(JOB_ID(first.id))
    assert job.func_name == "hub.mail.send_email" and job.args == [first.id]


def test_without_smtp_the_email_stays_in_the_outbox(app, client, admin, make_user):
    queued = _queue(organization_id=admin.organization_id)
    _queue(key="other-org", organization_id=make_user(org="Other", email="o@other.example").organization_id)
    assert sent(send_email(queued.id))
    assert send_email(queued.id)["outcome"] == "already_done"
    db.session.expire_all()
    stored = db.session.get(OutboundEmail, queued.id)
    assert (stored.status_label, stored.transport, stored.attempts) == ("sent", "outbox", 1)
    sign_in(client, admin.email)
    page = client.get("/dev/outbox").get_data(as_text=True)
    assert "Hello Ada" in page and "&lt;p&gt;Hello &lt;b&gt;Ada&lt;/b&gt;&lt;/p&gt;" in page
    assert "sent · outbox" in page and "o@other.example" not in page
    app.config["PRODUCTION"] = True
    assert client.get("/dev/outbox").status_code == 404


def test_the_outbox_shows_each_html_email_rendered_in_a_sandboxed_frame(app, client, admin, make_user):
    own = _queue(organization_id=admin.organization_id)
    other = _queue(key="other-org", organization_id=make_user(org="Other", email="o@other.example").organization_id)
    sign_in(client, admin.email)
    page = client.get("/dev/outbox").get_data(as_text=True)
    assert f'<iframe class="email-preview" sandbox src="/dev/outbox/{own.id}.html"' in page
    preview = client.get(f"/dev/outbox/{own.id}.html")
    assert preview.status_code == 200 and preview.get_data(as_text=True) == "<p>Hello <b>Ada</b></p>"
    csp = preview.headers["Content-Security-Policy"]
    # Its own opaque origin, no script, nothing fetched, framed only by the hub.
    assert "sandbox" in csp.split("; ") and "default-src 'none'" in csp and "frame-ancestors 'self'" in csp
    assert "script-src" not in csp and preview.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert client.get(f"/dev/outbox/{other.id}.html").status_code == 404  # another organization's
    app.config["PRODUCTION"] = True
    assert client.get(f"/dev/outbox/{own.id}.html").status_code == 404


def test_outbox_page_is_for_admins(app, make_user):
    member = make_user(role="member", email="member@acme.example")
    client = app.test_client()
    sign_in(client, member.email)
    assert client.get("/dev/outbox").status_code == 403


def test_send_email_through_smtp(app, smtp_server):
    app.config["SMTP_URL"] = smtp_server.url
    queued = _queue()
    assert sent(send_email(queued.id)) and send_email(queued.id)["outcome"] == "already_done"
    [message] = smtp_server.messages
    assert message["To"] == "ada@example.com" and message["Subject"] == "Welcome"
    assert message.get_body(("plain",)).get_content().strip() == "Hello Ada"
    assert "<b>Ada</b>" in message.get_body(("html",)).get_content()
    db.session.expire_all()
    assert db.session.get(OutboundEmail, queued.id).transport == "smtp"


def test_a_failed_send_is_visible_and_retried(app, admin, smtp_server):
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}?timeout=2"  # nothing listens
    queued = _queue(organization_id=admin.organization_id)
    with pytest.raises(OSError):
        send_email(queued.id)  # the last try (no RQ job here): failed for good, visible
    db.session.expire_all()
    failed = db.session.get(OutboundEmail, queued.id)
    assert failed.status == "failed" and "ConnectionRefusedError" in failed.error
    assert [e.id for e in mail.delivery_problems(admin.organization_id)] == [queued.id]
    app.config["SMTP_URL"] = smtp_server.url
    from hub.outbox import retry_failed

    assert retry_failed(send_email, OutboundEmail.id == queued.id) == 1  # the Retry button
    assert sent(send_email(queued.id)) and len(smtp_server.messages) == 1
    db.session.expire_all()
    done = db.session.get(OutboundEmail, queued.id)
    assert done.attempts == 2 and done.error is None
    assert mail.delivery_problems(admin.organization_id) == []


def test_a_live_lease_keeps_other_workers_out(app, smtp_server):
    from datetime import timedelta

    from hub.models import utcnow

    app.config["SMTP_URL"] = smtp_server.url
    queued = _queue()
    queued.status, queued.lease_until = "running", utcnow() + timedelta(minutes=1)
    db.session.commit()
    assert send_email(queued.id)["outcome"] == "in_flight" and smtp_server.messages == []
    queued.lease_until = utcnow() - timedelta(seconds=1)  # that worker died mid-send
    db.session.commit()
    assert sent(send_email(queued.id)) and len(smtp_server.messages) == 1


def test_sweeper_enqueues_emails_left_behind(app):
    from datetime import timedelta

    from hub.models import utcnow

    app.config["HUB_SWEEP_AFTER_SECONDS"] = 10
    queued = _queue()
    queued.due_at = utcnow() - timedelta(minutes=10)
    fresh = _queue(key="fresh")
    db.session.commit()
    get_queue("mail").empty()
    assert sweep()["enqueued"] == 1
    assert get_queue("mail").job_ids == [JOB_ID(queued.id)]
    assert fresh.id not in str(get_queue("mail").job_ids)


def test_sweeper_enqueues_at_once_an_email_whose_job_redis_lost(app):
    from datetime import timedelta

    from hub.models import utcnow

    app.config["HUB_SWEEP_AFTER_SECONDS"] = 10
    lost = _queue(key="lost")  # its job vanished (Redis restarted without persistence)
    waiting = _queue(key="waiting")  # its job is still in Redis
    just_now = _queue(key="just-now")  # too young: queue_email's own job is on its way
    for row in (lost, waiting):
        row.due_at = utcnow() - timedelta(seconds=30)
    db.session.commit()
    get_queue("mail").remove(JOB_ID(lost.id))
    get_queue("mail").fetch_job(JOB_ID(lost.id)).delete()
    assert sweep()["enqueued"] == 1
    assert JOB_ID(lost.id) in get_queue("mail").job_ids
    assert get_queue("mail").job_ids.count(JOB_ID(waiting.id)) == 1
    assert JOB_ID(just_now.id) in get_queue("mail").job_ids


def _run_worker(app, smtp_url):
    env = dict(os.environ, PYTHONPATH=ROOT, DATABASE_URL=app.config["DATABASE_URL"],
               REDIS_URL=app.config["REDIS_URL"], SMTP_URL=smtp_url,
               SECRET_KEY=app.config["SECRET_KEY"], HUB_ENCRYPTION_KEYS=TEST_KEYS[0],
               HUB_BASE_URL=app.config["HUB_BASE_URL"], LEVER_ENV="local",
               LEVER_CLIENT_ID="wecp-hub-test", LEVER_CLIENT_SECRET="test-client-secret")
    done = subprocess.run([sys.executable, "-m", "hub.cli", "worker", "--burst", "--queues", "mail"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_send_email_job_twice_in_a_worker_sends_one_message(pg_app, smtp_server):
    queued = _queue()
    _run_worker(pg_app, smtp_server.url)
    assert len(smtp_server.messages) == 1
    from hub.outbox import enqueue_row

    enqueue_row(kind_of(send_email), queued.id)  # the same job again, as a retry or the sweeper would
    _run_worker(pg_app, smtp_server.url)
    assert len(smtp_server.messages) == 1
    db.session.expire_all()
    stored = db.session.get(OutboundEmail, queued.id)
    assert (stored.status_label, stored.attempts, stored.transport) == ("sent", 1, "smtp")
    assert smtp_server.messages[0]["Message-ID"] == f"<{stored.message_id_hash}@wecp.local>"


def test_invitation_email_has_both_parts_and_escapes_the_name(app, admin, smtp_server):
    from hub.assessments import services
    from tests.hub.assessments.conftest import make_test

    app.config["SMTP_URL"] = smtp_server.url
    test = make_test(admin.organization_id)
    invitation, _ = services.create_invitation(
        test.id, name='<img src=x onerror="alert(1)">', email="cand@example.com",
        source="tiny_example", source_ref="opp", idempotency_key="inv-mail")
    db.session.commit()
    send_email(services.invitation_email(invitation.id).id)
    [message] = smtp_server.messages
    url = services.invitation_url(invitation.id)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "<img" not in html and "&lt;img src=x" in html and url in html
    assert url in text and "Python basics" in text and message["Subject"].startswith("Acme: ")  # the employer
    assert invitation.expires_at.strftime("%d %b %Y, %H:%M UTC") in text
    assert "20 minutes" in html


def _post_ping(app, key: str, **payload) -> None:
    import json

    from tests.workers import make_connection

    conn = make_connection()
    response = app.test_client().post(f"/webhooks/tiny_example/{conn.endpoint_id}",
                                      data=json.dumps({"id": key, **payload}),
                                      headers={"X-Tiny-Secret": "tiny-secret"})
    assert response.status_code == 200


def _burst(app, queues: str, **env) -> None:
    from tests.workers import worker_env

    done = subprocess.run([sys.executable, "-m", "hub.cli", "worker", "--burst", "--queues", queues],
                          cwd=ROOT, env=worker_env(app, **env), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_an_email_a_job_schedules_goes_out_right_after_it_in_the_same_worker(pg_app, smtp_server):
    """No job of its own: the worker that ran the delivery (only the webhooks queue here) sent it."""
    _post_ping(pg_app, "m1", mail="ada@example.com")
    _burst(pg_app, "webhooks", SMTP_URL=smtp_server.url)
    assert [m["To"] for m in smtp_server.messages] == ["ada@example.com"]
    db.session.expire_all()
    sent = db.session.scalar(db.select(OutboundEmail))
    assert (sent.status_label, sent.attempts) == ("sent", 1)
    assert get_queue("mail").count == 0


@pytest.mark.slow
def test_an_email_that_fails_right_after_its_job_goes_to_its_own_job(pg_app):
    _post_ping(pg_app, "m2", mail="ada@example.com")
    _burst(pg_app, "webhooks", SMTP_URL=f"smtp://127.0.0.1:{free_port()}")  # nothing listens there
    db.session.expire_all()
    waiting = db.session.scalar(db.select(OutboundEmail))
    assert (waiting.status, waiting.attempts) == ("pending", 1) and waiting.error
    assert get_queue("mail").job_ids == [JOB_ID(waiting.id)]  # retried by its own job, nothing lost
