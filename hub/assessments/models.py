"""WeCP's assessment tables: tests and their questions, candidate invitations, graded results."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..crypto import EncryptedField
from ..extensions import db
from ..models import Organization, _PresetId, new_uuid, utcnow

#: Question kinds: one correct option (radio buttons) or several (checkboxes).
KINDS = ("single", "multiple")

#: Invitation statuses, in the order a candidate meets them.
INVITED, STARTED, COMPLETED, EXPIRED = "invited", "started", "completed", "expired"
#: Withdrawn before the candidate started (e.g. archived in the ATS): the link says so kindly.
CANCELLED = "cancelled"
STATUSES = (INVITED, STARTED, COMPLETED, EXPIRED, CANCELLED)


def new_link_token() -> str:
    """An unguessable token for a candidate or report link (256 bits)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AssessmentTest(db.Model):
    """A multiple-choice test an organization sends to candidates."""

    __tablename__ = "assessment_test"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    #: Share of the maximum score (0–100) a candidate needs to pass.
    pass_mark: Mapped[int] = mapped_column(default=60)
    time_limit_minutes: Mapped[int] = mapped_column(default=30)
    #: Days an invitation may be started after it was sent.
    valid_days: Mapped[int] = mapped_column(default=7)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    questions: Mapped[list[AssessmentQuestion]] = relationship(
        back_populates="test", order_by="AssessmentQuestion.position", cascade="all, delete-orphan")


class AssessmentQuestion(db.Model):
    """One multiple-choice question; each is worth one point, all correct options must be chosen."""

    __tablename__ = "assessment_question"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    test_id: Mapped[int] = mapped_column(sa.ForeignKey("assessment_test.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    text: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.String(10), default="single")
    #: Option texts, in the order shown to candidates.
    options: Mapped[list] = mapped_column(sa.JSON, default=list)
    #: Indexes into ``options`` of the correct option(s).
    correct: Mapped[list] = mapped_column(sa.JSON, default=list)

    test: Mapped[AssessmentTest] = relationship(back_populates="questions")

    __table_args__ = (sa.CheckConstraint(f"kind IN {KINDS!r}", name="kind"),)


class Invitation(_PresetId, db.Model):
    """One candidate's invitation to one test, reached through an emailed, unguessable link.

    The link token is looked up by its SHA-256; an encrypted copy lets ``invitation_url`` render
    the link again (emails, retries) without the token ever being stored in clear.
    """

    __tablename__ = "invitation"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    test_id: Mapped[int] = mapped_column(sa.ForeignKey("assessment_test.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    token_ciphertext: Mapped[str] = mapped_column(sa.Text)
    candidate_name: Mapped[str] = mapped_column(sa.String(200), default="")
    candidate_email: Mapped[str] = mapped_column(sa.String(320))
    #: Who asked for it, (a plugin key), and their reference (e.g. the ATS's candidate id).
    source: Mapped[str] = mapped_column(sa.String(64))
    source_ref: Mapped[str | None] = mapped_column(sa.String(200))
    #: The job the candidate applied for, as the integration names it (an ATS posting's title).
    job_title: Mapped[str | None] = mapped_column(sa.String(300))
    #: The caller's key: one live invitation per key. ``generation`` counts re-invitations after
    #: expiry, so the unique pair lets PostgreSQL settle concurrent creations.
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    generation: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(sa.String(20), default=INVITED, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The candidate must start before this moment.
    expires_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    #: started_at + time limit + grace; a later submission is refused.
    submit_by: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    test: Mapped[AssessmentTest] = relationship()
    result: Mapped[Result | None] = relationship(back_populates="invitation", uselist=False)
    organization: Mapped[Organization] = relationship()

    token = EncryptedField("token_ciphertext")

    __table_args__ = (sa.UniqueConstraint("idempotency_key", "generation"),
                      # An integration finds a candidate's invitations by its own reference.
                      sa.Index("ix_invitation_source_ref", "source", "source_ref"),
                      sa.CheckConstraint(f"status IN {STATUSES!r}", name="status"))

    def is_expired(self, now: datetime | None = None) -> bool:
        """Expired in fact, even before the periodic job has written it down."""
        now = now or utcnow()
        if self.status == EXPIRED:
            return True
        if self.status == INVITED:
            return now >= self.expires_at
        if self.status == STARTED:
            return self.submit_by is not None and now > self.submit_by
        return False

    def display_status(self, now: datetime | None = None) -> str:
        return EXPIRED if self.is_expired(now) else self.status


class Result(_PresetId, db.Model):
    """The graded answers of one completed invitation (at most one per invitation).

    ``details`` keeps a snapshot of each question as the candidate saw it, so editing the test
    later does not change a report. The report link works like the invitation link: looked up
    by hash, encrypted copy for ``report_url``, revocable by an admin.
    """

    __tablename__ = "result"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    invitation_id: Mapped[str] = mapped_column(sa.ForeignKey("invitation.id"), unique=True)
    test_id: Mapped[int] = mapped_column(sa.ForeignKey("assessment_test.id"), index=True)
    #: ``{question_id: [option index, ...]}`` as submitted (after normalising).
    answers: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    #: Per question: text, options, correct, selected, is_correct.
    details: Mapped[list] = mapped_column(sa.JSON, default=list)
    score: Mapped[int]
    max_score: Mapped[int]
    percentage: Mapped[float] = mapped_column(sa.Float)
    pass_mark: Mapped[int]
    passed: Mapped[bool]
    completed_at: Mapped[datetime] = mapped_column(default=utcnow)
    report_token_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    report_token_ciphertext: Mapped[str | None] = mapped_column(sa.Text)
    report_revoked_at: Mapped[datetime | None]

    invitation: Mapped[Invitation] = relationship(back_populates="result")
    test: Mapped[AssessmentTest] = relationship()

    report_token = EncryptedField("report_token_ciphertext")

    def issue_report_link(self) -> str:
        """Give the result a fresh report token (replacing any earlier one) and return it."""
        token = new_link_token()
        self.report_token_hash = hash_token(token)
        self.report_token = token
        self.report_revoked_at = None
        return token

    def revoke_report_link(self) -> None:
        self.report_token_hash = None
        self.report_token_ciphertext = None
        self.report_revoked_at = utcnow()
