"""The activity log a recruiter reads: what happened for each candidate, written by every plugin
as it happens (``record``), read and rendered by the hub (``page``, ``hub/_activity.html``).

A line names its candidate by the ATS's own reference (``subject_ref``) and, when the plugin knew
it, their name; the hub fills in a name from another line of the same candidate, the invitation's
email and the report link, and asks the plugin for what only it knows (the job and stage, the
candidate's profile in the ATS: ``Plugin.activity_context``) and for its job filter.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db
from .models import utcnow

#: What each kind of line is about, in a recruiter's words (a plugin adds or renames its own
#: with ``Plugin.activity_kinds``).
KIND_LABELS = {
    "webhook": "Event", "invitation": "Invitation", "email": "Email", "start": "Test started",
    "completion": "Test completed", "note": "Result note", "tag": "Tags", "move": "Stage move",
    "setup": "Setup",
}
#: How it went, in a recruiter's words.
STATUS_LABELS = {"ok": "Done", "skipped": "Skipped", "failed": "Failed", "paused": "Paused",
                 "missed": "No webhook", "expired": "Expired", "cancelled": "Withdrawn"}
#: Lines per page.
LIMIT = 200
#: The longest job reference the job filter passes on to the plugin.
MAX_JOB_REF = 64


class ActivityLine(db.Model):
    """One line of an organization's activity log, per candidate: what happened and why."""

    __tablename__ = "activity"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"))
    plugin_key: Mapped[str] = mapped_column(sa.String(64))
    #: The ATS's reference of the candidate (an application, an opportunity…).
    subject_ref: Mapped[str | None] = mapped_column(sa.String(64))
    subject_name: Mapped[str | None] = mapped_column(sa.String(300))
    #: ``KIND_LABELS`` or the plugin's own kinds.
    kind: Mapped[str] = mapped_column(sa.String(20))
    #: ``STATUS_LABELS``.
    status: Mapped[str] = mapped_column(sa.String(20))
    message: Mapped[str] = mapped_column(sa.Text, default="")
    delivery_id: Mapped[int | None] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"))
    invitation_id: Mapped[str | None] = mapped_column(sa.String(36))
    result_id: Mapped[str | None] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (sa.Index("ix_activity_organization_plugin", "organization_id", "plugin_key", "id"),
                      sa.Index("ix_activity_subject", "organization_id", "subject_ref"))


def record(plugin_key: str, kind: str, status: str, message: str, *, organization_id: int,
           subject_ref: str | None = None, subject_name: str | None = None, **refs) -> ActivityLine:
    """Add a line to the session (committed with the caller's transaction: the line is true
    exactly when what it tells of is). ``refs``: ``delivery_id``, ``invitation_id``, ``result_id``."""
    line = ActivityLine(plugin_key=plugin_key, kind=kind, status=status, message=message,
                        organization_id=organization_id, subject_ref=subject_ref,
                        subject_name=subject_name, **refs)
    db.session.add(line)
    return line


@dataclass
class Filters:
    """The page's filters: a status, a job of the plugin's, and days."""

    status: str = ""
    job: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_args(cls, args, jobs=()) -> Filters:
        """The page's query string; anything not understood is ignored (that filter is off). A job
        is kept only when it is one of ``jobs`` (the plugin's): no other text reaches a query."""
        status, job = args.get("status", ""), args.get("job", "")[:MAX_JOB_REF]
        return cls(status=status if status in STATUS_LABELS else "",
                   job=job if job in {ref for ref, _ in jobs} else "",
                   since=_day(args.get("since")), until=_day(args.get("until")))

    @property
    def active(self) -> bool:
        return bool(self.status or self.job or self.since or self.until)


def _day(text) -> datetime | None:
    try:
        return datetime.strptime((text or "")[:10], "%Y-%m-%d")
    except ValueError:
        return None


def subject_names(organization_id: int, plugin_key: str, refs: set, lines=()) -> dict:
    """A name for every candidate reference: lines about notes and tags carry none of their own."""
    names = {line.subject_ref: line.subject_name for line in lines if line.subject_ref and line.subject_name}
    missing = set(refs) - set(names)
    if missing:
        names.update(db.session.execute(
            db.select(ActivityLine.subject_ref, db.func.max(ActivityLine.subject_name)).where(
                ActivityLine.organization_id == organization_id, ActivityLine.plugin_key == plugin_key,
                ActivityLine.subject_ref.in_(missing), ActivityLine.subject_name.is_not(None))
            .group_by(ActivityLine.subject_ref)).all())
    return names


def lines(organization_id: int, plugin, filters: Filters) -> list[dict]:
    """The newest lines of ``plugin`` matching ``filters``, each with what the page shows."""
    from .assessments import services as assessments

    query = db.select(ActivityLine).where(ActivityLine.organization_id == organization_id,
                                          ActivityLine.plugin_key == plugin.key)
    if filters.status:
        query = query.where(ActivityLine.status == filters.status)
    if filters.since:
        query = query.where(ActivityLine.created_at >= filters.since)
    if filters.until and filters.until.date() < datetime.max.date():  # 9999-12-31: no end (#39, 7)
        query = query.where(ActivityLine.created_at < filters.until + timedelta(days=1))
    if filters.job:
        query = query.where(ActivityLine.subject_ref.in_(plugin.activity_job_subjects(organization_id, filters.job)))
    rows = db.session.scalars(query.order_by(ActivityLine.id.desc()).limit(LIMIT)).all()
    refs = {r.subject_ref for r in rows if r.subject_ref}
    names = subject_names(organization_id, plugin.key, refs, rows)
    context = plugin.activity_context(organization_id, refs) if refs else {}
    kinds = {**KIND_LABELS, **plugin.activity_kinds}
    emails = {r.invitation_id: assessments.get_invitation(r.invitation_id) for r in rows
              if r.kind == "invitation" and r.invitation_id}
    shown = []
    for row in rows:
        about = context.get(row.subject_ref)
        shown.append({
            "row": row, "when": row.created_at,
            "candidate": names.get(row.subject_ref) or row.subject_name or "Unknown candidate",
            "job": about.job if about else "", "stage": about.stage if about else "",
            "what": kinds.get(row.kind, row.kind.capitalize()),
            "status": STATUS_LABELS.get(row.status, row.status.capitalize()),
            "profile_url": about.profile_url if about else None,
            "report_url": _report(row.result_id),
            "email": emails.get(row.invitation_id) if row.kind == "invitation" else None,
        })
    return shown


def _report(result_id) -> str | None:
    from .assessments import services as assessments

    if not result_id:
        return None
    try:
        return assessments.report_url(result_id)
    except (LookupError, assessments.ReportLinkRevoked):  # revoked by an admin, or deleted since
        return None


def page(organization_id: int, plugin, args) -> dict:
    """Everything ``hub/_activity.html`` renders for one plugin's log, from the query string."""
    from flask import current_app

    from .assessments import services as assessments
    from .outbox import work_counts

    jobs = plugin.activity_jobs(organization_id)
    filters = Filters.from_args(args, jobs)
    return {"lines": lines(organization_id, plugin, filters), "filters": filters, "jobs": jobs,
            "job_label": plugin.activity_job_label, "statuses": STATUS_LABELS, "plugin": plugin,
            "health": work_counts(organization_id),
            "resend_limits": assessments.resend_limits(current_app.config)}

