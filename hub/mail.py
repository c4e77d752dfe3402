"""Outgoing email: a kind of durable work (``hub.outbox``), the ``send_email`` job, the dev outbox page.

Delivery guarantee, honestly: see ``send_email`` (at-least-once, with a window of one SMTP
round trip).

Without ``SMTP_URL`` nothing leaves the machine: the email is marked sent ``to the outbox`` and can
be read at ``/dev/outbox`` (admins, never in production).
"""
from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, make_response, render_template
from sqlalchemy.orm import Mapped, mapped_column

from .auth import admin_required, scoped
from .crypto import EncryptedField
from .extensions import db
from .metrics import EMAILS
from .models import _PresetId, new_uuid, utcnow
from .outbox import DONE, FAILED, DurableWork, durable, register_kind, schedule_once
from .outcomes import Outcome

bp = Blueprint("mail", __name__)
log = logging.getLogger("hub.mail")

#: How long a worker owns an email it is sending; after that another worker may try again.
LEASE = timedelta(minutes=5)
#: Runs after which the sweeper leaves a failing email failed (RQ retries count too).
MAX_ATTEMPTS = 8


class OutboundEmail(_PresetId, DurableWork, db.Model):
    """One email, stored before it is sent. Bodies are encrypted: they carry candidate links."""

    __tablename__ = "outbound_email"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[int | None] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    #: The caller's key; a second ``queue_email`` with it returns the first email.
    idempotency_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    to: Mapped[str] = mapped_column(sa.String(320))
    subject: Mapped[str] = mapped_column(sa.String(300))
    #: The From display name (the address is always MAIL_FROM's) and the Reply-To, chosen when
    #: the email was queued, so every attempt sends the same message.
    from_name: Mapped[str | None] = mapped_column(sa.String(200))
    reply_to: Mapped[str | None] = mapped_column(sa.String(320))
    text_ciphertext: Mapped[str] = mapped_column(sa.Text)
    html_ciphertext: Mapped[str | None] = mapped_column(sa.Text)
    #: ``smtp`` or ``outbox`` (no SMTP_URL configured: kept here, shown on /dev/outbox).
    transport: Mapped[str | None] = mapped_column(sa.String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    text = EncryptedField("text_ciphertext")
    html = EncryptedField("html_ciphertext")

    @property
    def message_id_hash(self) -> str:
        return hashlib.sha256(self.idempotency_key.encode()).hexdigest()[:32]

    #: The status in an email's own words, for pages.
    LABELS = {"pending": "queued", "running": "sending", "done": "sent", "failed": "failed",
              "paused": "paused", "skipped": "skipped"}

    @property
    def sent(self) -> bool:
        return self.status == DONE

    @property
    def status_label(self) -> str:
        return self.LABELS.get(self.status, self.status)


@dataclass(frozen=True)
class Sent(Outcome):
    code: ClassVar[str] = "sent"
    transport: str = "smtp"

    def describe(self) -> str:
        return "sent" if self.transport == "smtp" else "kept in the outbox (no SMTP_URL)"


def queue_email(to: str, subject: str, text: str, html: str | None = None, *,
                idempotency_key: str, organization_id: int | None = None, from_name: str | None = None,
                reply_to: str | None = None) -> OutboundEmail:
    """Store the email once per ``idempotency_key``, in the caller's transaction.

    Its ``send_email`` job is enqueued when that transaction commits. A second call with the
    same key returns the stored email and changes nothing.
    """
    # Subjects are built from text users and providers chose; a line break would start a header.
    subject = " ".join(subject.split())
    email = OutboundEmail(to=to, subject=subject, idempotency_key=idempotency_key,
                          organization_id=organization_id,
                          from_name=" ".join((from_name or "").split())[:200] or None, reply_to=reply_to or None)
    email.text = text
    email.html = html
    if schedule_once(send_email, email):
        return email
    return email_by_key(idempotency_key)


def email_by_key(idempotency_key: str) -> OutboundEmail | None:
    """The email queued under ``idempotency_key`` (its ``status``/``error`` show delivery)."""
    return db.session.scalar(db.select(OutboundEmail).filter_by(idempotency_key=idempotency_key))


def delivery_problems(organization_id: int, limit: int = 20) -> list[OutboundEmail]:
    """The organization's emails that failed to send, newest first, for activity logs."""
    return list(db.session.scalars(
        db.select(OutboundEmail).filter_by(organization_id=organization_id, status=FAILED)
        .order_by(OutboundEmail.created_at.desc()).limit(limit)))


# follow_on: an email scheduled by a job (an invitation) goes out right after it, in the same worker.
def _about_emails(emails: list) -> dict:
    """For Settings › Work needing attention: whom each email is to, and what it is."""
    return {email.id: (f"To {email.to}: {email.subject}", None) for email in emails}


@durable(OutboundEmail, queue="mail", lease=LEASE, max_attempts=MAX_ATTEMPTS, title="Email", follow_on=True,
         describe=_about_emails)
def send_email(email: OutboundEmail) -> Outcome:
    """Send one stored email. Safe to run any number of times, by any number of workers.

    SMTP is not transactional: a worker that dies after the server accepted the message but
    before the outcome is committed leaves the lease to run out, and the email is sent again.
    At-least-once, with a window of one SMTP round trip; every attempt carries the same
    Message-ID, so receiving servers that deduplicate drop the copy.
    """
    smtp_url = current_app.config.get("SMTP_URL")
    if smtp_url:
        try:
            _deliver(smtp_url, build_message(email))
        except Exception:
            EMAILS.labels("failed").inc()
            raise
    email.transport = "smtp" if smtp_url else "outbox"
    EMAILS.labels("sent" if smtp_url else "outbox").inc()
    log.info("hub.mail.sent email=%s transport=%s", email.id, email.transport)
    return Sent(transport=email.transport)


def from_header(email: OutboundEmail) -> str:
    """The email's From: the employer's name in front of our address (sending as their domain
    would fail SPF/DMARC), "Acme Hiring via WeCP <no-reply@…>"; the outbox shows the same."""
    sender = current_app.config["MAIL_FROM"]
    name, address = parseaddr(sender)
    return formataddr((f"{email.from_name} via {name or 'WeCP'}", address)) if email.from_name else sender


def build_message(email: OutboundEmail) -> EmailMessage:
    address = parseaddr(current_app.config["MAIL_FROM"])[1]
    domain = address.rpartition("@")[2] or "wecp.local"
    msg = EmailMessage()
    # Replies go to the employer's recruiter when they gave one.
    msg["From"] = from_header(email)
    if email.reply_to:
        msg["Reply-To"] = email.reply_to
    msg["To"] = email.to
    msg["Subject"] = email.subject
    msg["Date"] = formatdate(localtime=False)
    # Stable across attempts, so a resend after a crash can be recognised as the same message.
    msg["Message-ID"] = f"<{email.message_id_hash}@{domain}>"
    msg.set_content(email.text)
    if email.html:
        msg.add_alternative(email.html, subtype="html")
    return msg


def _deliver(smtp_url: str, msg: EmailMessage) -> None:
    """Hand the message to the server of ``smtp://[user:pass@]host[:port][?starttls=1]`` or ``smtps://``."""
    url = urlsplit(smtp_url)
    if url.scheme not in ("smtp", "smtps"):
        raise ValueError("SMTP_URL must start with smtp:// or smtps://")
    options = parse_qs(url.query)
    timeout = float(options.get("timeout", ["20"])[0])
    host = url.hostname or "127.0.0.1"
    if url.scheme == "smtps":
        server = smtplib.SMTP_SSL(host, url.port or 465, timeout=timeout,
                                  context=ssl.create_default_context())
    else:
        server = smtplib.SMTP(host, url.port or 25, timeout=timeout)
    with server:
        if url.scheme == "smtp" and options.get("starttls", ["0"])[0] in ("1", "true", "yes"):
            server.starttls(context=ssl.create_default_context())
        if url.username:
            server.login(unquote(url.username), unquote(url.password or ""))
        server.send_message(msg)


@bp.route("/dev/outbox")
@admin_required
def outbox():
    """Development only: read the emails of your organization as they would have been sent."""
    if current_app.config.get("PRODUCTION"):
        abort(404)
    emails = db.session.scalars(scoped(OutboundEmail).order_by(OutboundEmail.created_at.desc())
                                .limit(50)).all()
    return render_template("hub/mail/outbox.html", emails=emails, from_header=from_header)


#: The email's own HTML, shown in a frame of the outbox: no script, no form, no request anywhere
#: (its images are not loaded), an origin of its own (``sandbox``), framed only by the hub.
PREVIEW_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'self'; sandbox")


@bp.route("/dev/outbox/<email_id>.html")
@admin_required
def outbox_html(email_id):
    """Development only: the HTML part of one email of your organization, as a mail client shows it."""
    if current_app.config.get("PRODUCTION"):
        abort(404)
    from .auth import get_scoped_or_404

    email = get_scoped_or_404(OutboundEmail, email_id)
    if not email.html:
        abort(404)
    response = make_response(email.html)
    response.mimetype = "text/html"
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def init_app(app) -> None:
    register_kind(app, send_email)
    app.register_blueprint(bp)
