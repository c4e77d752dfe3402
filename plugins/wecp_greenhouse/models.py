"""The wecp_greenhouse_* tables: the tests Greenhouse sent, and the results WeCP tells it of.

An ``Interview`` is one ``send_test`` (one take-home test instance in Greenhouse): its id is the
``partner_interview_id`` Greenhouse keeps and asks ``test_status`` about. A ``Completion`` is
durable work (``hub.outbox``): the PATCH that tells Greenhouse a result is ready, done exactly
once by ``push.mark_complete``. A ``HarvestWrite`` is durable work too: a note or a move
through Harvest, for organizations that connected it (``followup.write``).
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub import activity as activity_log
from hub.extensions import db
from hub.models import new_uuid, utcnow
from hub.outbox import DurableWork

KEY = "wecp_greenhouse"


class Interview(db.Model):
    """One test Greenhouse asked WeCP to send (``send_test``), and the invitation it became."""

    __tablename__ = "wecp_greenhouse_interview"

    #: The ``partner_interview_id`` answered to Greenhouse.
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"))
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id"), index=True)
    #: SHA-256 of what makes a send the same send (Greenhouse's ``url``, else the test, email and
    #: application): a repeated ``send_test`` finds this row (docs/providers/greenhouse.md#send-test).
    dedupe_key: Mapped[str] = mapped_column(sa.String(64))
    test_id: Mapped[int] = mapped_column(sa.ForeignKey("assessment_test.id", ondelete="CASCADE"))
    invitation_id: Mapped[str | None] = mapped_column(sa.ForeignKey("invitation.id"))
    #: Set when the candidate completes the test.
    result_id: Mapped[str | None] = mapped_column(sa.String(36))
    #: Where the completion PATCH goes (``url`` of ``send_test``; None when Greenhouse gave none).
    callback_url: Mapped[str | None] = mapped_column(sa.Text)
    candidate_name: Mapped[str] = mapped_column(sa.String(300), default="")
    candidate_email: Mapped[str] = mapped_column(sa.String(320))
    #: The candidate's application in Greenhouse (kept only when it is on a Greenhouse host).
    profile_url: Mapped[str | None] = mapped_column(sa.Text)
    application_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    candidate_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    #: The job applied for, when Harvest could say at ``send_test`` (the Assessment API does not).
    job_title: Mapped[str | None] = mapped_column(sa.String(200))
    #: The Greenhouse user who clicked Send Test (their email), when Greenhouse says.
    sent_by: Mapped[str | None] = mapped_column(sa.String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.UniqueConstraint("organization_id", "dedupe_key"),)


class Completion(DurableWork, db.Model):
    """Tell Greenhouse a result is ready (``PATCH`` of the interview's ``callback_url``): once
    per result, and once more per correction of its score."""

    __tablename__ = "wecp_greenhouse_completion"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"))
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id"), index=True)
    interview_id: Mapped[str] = mapped_column(sa.ForeignKey("wecp_greenhouse_interview.id"), index=True)
    result_id: Mapped[str] = mapped_column(sa.String(36))
    #: ``result:<result id>``, or ``regrade:<result id>:<n>`` for a corrected score.
    key: Mapped[str] = mapped_column(sa.String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HarvestWrite(DurableWork, db.Model):
    """A note on the candidate, or a move of one who passed, written through Harvest
    (``followup.write``): once per result (a corrected score adds a note)."""

    __tablename__ = "wecp_greenhouse_harvest_write"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"))
    #: The organization's Harvest connection: the work pauses while it is revoked.
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id"), index=True)
    interview_id: Mapped[str] = mapped_column(sa.ForeignKey("wecp_greenhouse_interview.id"), index=True)
    result_id: Mapped[str] = mapped_column(sa.String(36))
    #: ``note`` or ``move``.
    action: Mapped[str] = mapped_column(sa.String(10))
    #: ``note:<result id>`` (``:<n>`` after a correction) or ``move:<result id>``.
    key: Mapped[str] = mapped_column(sa.String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def record(kind: str, status: str, message: str, *, organization_id: int, interview: Interview | None = None,
           **refs):
    """A line of the hub's activity log (committed with the caller's transaction), about the
    candidate of ``interview``."""
    return activity_log.record(KEY, kind, status, message, organization_id=organization_id,
                               subject_ref=interview.id if interview else None,
                               subject_name=(interview.candidate_name or interview.candidate_email)
                               if interview else None, **refs)
