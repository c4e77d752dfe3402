"""Outgoing email: a transactional outbox table, the ``send_email`` job, and the dev outbox page.

Delivery guarantee, honestly: SMTP is not transactional. ``send_email`` claims the row under a
lease (status ``sending``) so two workers never send it at the same time, and records ``sent``
right after the server accepted the message. If a worker dies in between, the lease runs out and
the sweeper sends it again: at-least-once, with a window of one SMTP round trip. Every attempt
carries the same Message-ID, so receiving servers that deduplicate drop the copy.

Without ``SMTP_URL`` nothing leaves the machine: the email is marked sent ``to the outbox`` and can
be read at ``/dev/outbox`` (admins, never in production).
"""
from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, render_template
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from .auth import admin_required, scoped
from .crypto import EncryptedField
from .extensions import db
from .models import _PresetId, new_uuid, utcnow
from .plugin import PeriodicJob

bp = Blueprint("mail", __name__)
log = logging.getLogger("hub.mail")

QUEUED, SENDING, SENT, FAILED = "queued", "sending", "sent", "failed"
STATUSES = (QUEUED, SENDING, SENT, FAILED)

#: How long a worker owns an email it is sending; after that another worker may try again.
LEASE = timedelta(minutes=5)
#: Attempts after which the sweeper leaves a failed email alone (RQ retries count too).
MAX_ATTEMPTS = 8

#: Re-enqueues emails whose job was lost (Redis down at queue time, worker killed mid-send).
HUB_PERIODIC_JOBS = [PeriodicJob("hub.mail.sweep_outbox", timedelta(minutes=1), queue="mail")]


class OutboundEmail(_PresetId, db.Model):
    """One email, stored before it is sent. Bodies are encrypted: they carry candidate links."""

    __tablename__ = "outbound_email"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[int | None] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    #: The caller's key; a second ``queue_email`` with it returns the first email.
    idempotency_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    to: Mapped[str] = mapped_column(sa.String(320))
    subject: Mapped[str] = mapped_column(sa.String(300))
    text_ciphertext: Mapped[str] = mapped_column(sa.Text)
    html_ciphertext: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20), default=QUEUED, index=True)
    #: ``smtp`` or ``outbox`` (no SMTP_URL configured: kept here, shown on /dev/outbox).
    transport: Mapped[str | None] = mapped_column(sa.String(20))
    attempts: Mapped[int] = mapped_column(default=0)
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    text = EncryptedField("text_ciphertext")
    html = EncryptedField("html_ciphertext")

    __table_args__ = (sa.CheckConstraint(f"status IN {STATUSES!r}", name="status"),)

    @property
    def message_id_hash(self) -> str:
        return hashlib.sha256(self.idempotency_key.encode()).hexdigest()[:32]


def queue_email(to: str, subject: str, text: str, html: str | None = None, *,
                idempotency_key: str, organization_id: int | None = None) -> OutboundEmail:
    """Store the email once per ``idempotency_key`` and enqueue ``send_email`` on queue ``mail``.

    Commits the current session (the row must exist before a worker looks for it). A second
    call with the same key returns the stored email and changes nothing. If Redis is down the
    email stays ``queued`` and ``sweep_outbox`` enqueues it later.
    """
    # Subjects are built from text users and providers chose; a line break would start a header.
    subject = " ".join(subject.split())
    existing = email_by_key(idempotency_key)
    if existing is None:
        email = OutboundEmail(to=to, subject=subject, idempotency_key=idempotency_key,
                              organization_id=organization_id)
        email.text = text
        email.html = html
        db.session.add(email)
        try:
            db.session.commit()
        except IntegrityError:  # a concurrent caller stored it first
            db.session.rollback()
            existing = email_by_key(idempotency_key)
        else:
            _enqueue(email.id)
            return email
    if existing.status == QUEUED:
        _enqueue(existing.id)
    return existing


def email_by_key(idempotency_key: str) -> OutboundEmail | None:
    """The email queued under ``idempotency_key`` (its ``status``/``last_error`` show delivery)."""
    return db.session.scalar(db.select(OutboundEmail).filter_by(idempotency_key=idempotency_key))


def delivery_problems(organization_id: int, limit: int = 20) -> list[OutboundEmail]:
    """The organization's emails that failed to send, newest first, for activity logs."""
    return list(db.session.scalars(
        db.select(OutboundEmail).filter_by(organization_id=organization_id, status=FAILED)
        .order_by(OutboundEmail.created_at.desc()).limit(limit)))


def _enqueue(email_id: str) -> None:
    from .jobs import enqueue

    try:
        enqueue("hub.mail.send_email", email_id, queue="mail", job_id=_job_id(email_id))
    except Exception:  # Redis down: the row is safe; the sweeper enqueues it later
        log.warning("hub.mail.enqueue_failed email=%s", email_id)


def send_email(email_id: str) -> str:
    """Job: send one stored email. Safe to run any number of times, by any number of workers."""
    now = utcnow()
    claimed = db.session.execute(
        sa.update(OutboundEmail)
        .where(OutboundEmail.id == email_id,
               sa.or_(OutboundEmail.status.in_((QUEUED, FAILED)),
                      sa.and_(OutboundEmail.status == SENDING, OutboundEmail.lease_until < now)))
        .values(status=SENDING, lease_until=now + LEASE, attempts=OutboundEmail.attempts + 1)
    ).rowcount
    db.session.commit()
    if not claimed:
        email = db.session.get(OutboundEmail, email_id)
        return "missing" if email is None else f"skipped ({email.status})"
    email = db.session.get(OutboundEmail, email_id)
    smtp_url = current_app.config.get("SMTP_URL")
    try:
        if smtp_url:
            _deliver(smtp_url, build_message(email))
    except Exception as exc:
        db.session.rollback()
        _finish(email_id, FAILED, last_error=f"{type(exc).__name__}: {exc}"[:1000])
        log.warning("hub.mail.send_failed email=%s error=%s", email_id, type(exc).__name__)
        raise  # RQ retries with the hub's growing intervals
    _finish(email_id, SENT, transport="smtp" if smtp_url else "outbox", sent_at=utcnow(),
            last_error=None)
    log.info("hub.mail.sent email=%s transport=%s", email_id, "smtp" if smtp_url else "outbox")
    return "sent"


def _finish(email_id: str, status: str, **values) -> None:
    db.session.execute(sa.update(OutboundEmail).where(OutboundEmail.id == email_id)
                       .values(status=status, lease_until=None, **values))
    db.session.commit()


def sweep_outbox() -> int:
    """Periodic job: enqueue emails whose job was lost, failed, or stuck in an expired lease.

    A ``queued`` email whose ``send_email`` job no longer exists in Redis is enqueued as soon
    as it is HUB_SWEEP_AFTER_SECONDS old; any other queued or failed email after 2 minutes
    (its job may still be waiting for a retry: enqueueing it again is harmless, the job id
    dedupes and ``send_email`` claims the row).
    """
    from .jobs import missing_jobs

    now = utcnow()
    stale = now - timedelta(minutes=2)
    young = now - timedelta(seconds=current_app.config.get("HUB_SWEEP_AFTER_SECONDS", 10))
    rows = db.session.execute(db.select(OutboundEmail.id, OutboundEmail.status, OutboundEmail.created_at).where(
        OutboundEmail.attempts < MAX_ATTEMPTS,
        sa.or_(sa.and_(OutboundEmail.status.in_((QUEUED, FAILED)), OutboundEmail.created_at < young),
               sa.and_(OutboundEmail.status == SENDING, OutboundEmail.lease_until < now)))
        .order_by(OutboundEmail.created_at).limit(2000)).all()
    recent_queued = [_job_id(r.id) for r in rows if r.status == QUEUED and r.created_at >= stale]
    lost = missing_jobs(recent_queued) if recent_queued else set()
    ids = [r.id for r in rows
           if not (r.status in (QUEUED, FAILED) and r.created_at >= stale) or _job_id(r.id) in lost]
    for email_id in ids:
        _enqueue(email_id)
    return len(ids)


def _job_id(email_id: str) -> str:
    return f"send_email-{email_id}"


def build_message(email: OutboundEmail) -> EmailMessage:
    sender = current_app.config["MAIL_FROM"]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "wecp.local"
    msg = EmailMessage()
    msg["From"] = sender
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
    return render_template("hub/mail/outbox.html", emails=emails)


def init_app(app) -> None:
    app.register_blueprint(bp)
