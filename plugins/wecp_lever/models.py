"""The wecp_lever_* tables: posting links, stage changes acted on, Lever writes.

Notes, tags and stage moves are durable work (``hub.outbox``): each row is written with the work
that asks for it and done exactly once by its job in ``flow``.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub import activity as activity_log
from hub.crypto import EncryptedField
from hub.extensions import db
from hub.models import User, new_uuid, utcnow
from hub.outbox import DurableWork


class PostingLink(db.Model):
    """A WeCP test linked to one Lever posting and one of Lever's (account-wide) stages."""

    __tablename__ = "wecp_lever_posting_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    test_id: Mapped[int] = mapped_column(sa.ForeignKey("assessment_test.id", ondelete="CASCADE"))
    posting_id: Mapped[str] = mapped_column(sa.String(64))
    posting_text: Mapped[str] = mapped_column(sa.String(300), default="")
    stage_id: Mapped[str] = mapped_column(sa.String(64))
    stage_text: Mapped[str] = mapped_column(sa.String(200), default="")
    linked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)

    linked_by: Mapped[User | None] = relationship()

    # One test never links to two stages of the same posting.
    __table_args__ = (sa.UniqueConstraint("test_id", "posting_id"),
                      sa.Index("ix_wecp_lever_posting_link_lookup", "organization_id", "stage_id", "posting_id"))

    @property
    def linked_at_ms(self) -> int:
        from calendar import timegm

        return timegm(self.linked_at.timetuple()) * 1000 + self.linked_at.microsecond // 1000


class StageChange(db.Model):
    """One Lever move of one opportunity into a linked stage, claimed once per linked test.

    Webhooks and reconciliation compute the same key (connection, opportunity, stage, the time
    Lever recorded the move, test), so a move seen twice invites once, and a candidate who
    stays in the stage is not invited again when the first invitation expires.
    """

    __tablename__ = "wecp_lever_stage_change"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    opportunity_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    stage_id: Mapped[str] = mapped_column(sa.String(64))
    #: The posting the opportunity applied to when it moved (None on rows from before it was kept):
    #: leaving it before starting withdraws the invitation.
    posting_id: Mapped[str | None] = mapped_column(sa.String(64))
    #: The posting's and the stage's names when it moved: the activity log names the posting a
    #: candidate was invited from, whatever links were made or removed since.
    posting_text: Mapped[str | None] = mapped_column(sa.String(300))
    stage_text: Mapped[str | None] = mapped_column(sa.String(200))
    test_id: Mapped[int] = mapped_column(sa.ForeignKey("assessment_test.id", ondelete="CASCADE"))
    via: Mapped[str] = mapped_column(sa.String(20))  # "webhook" or "reconcile"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Note(DurableWork, db.Model):
    """A note the hub writes on a Lever opportunity, exactly once per key.

    Keys: ``result:<result id>`` for a score; ``no-email:<opportunity>:<test id>`` when a
    candidate could not be invited (``reason`` says why).
    """

    __tablename__ = "wecp_lever_note"

    #: What the note is about: a result, or why an invitation could not be sent.
    RESULT, NO_EMAIL, INVALID_EMAIL = "result", "no_email", "invalid_email"
    #: A score corrected after its note was posted (Lever notes cannot be edited).
    CORRECTION = "correction"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id"))
    key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    reason: Mapped[str] = mapped_column(sa.String(20), default=RESULT)
    result_id: Mapped[str | None] = mapped_column(sa.ForeignKey("result.id", ondelete="CASCADE"))
    test_id: Mapped[int | None] = mapped_column(sa.ForeignKey("assessment_test.id", ondelete="CASCADE"))
    opportunity_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    perform_as: Mapped[str | None] = mapped_column(sa.String(64))
    #: Who ``perform_as`` is: owner, hiring_manager, creator or fallback.
    perform_as_role: Mapped[str | None] = mapped_column(sa.String(20))
    lever_note_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tag(DurableWork, db.Model):
    """Tags the hub adds to a Lever opportunity, stored with the work that asks for them.

    Keys: ``invited:<stage change key>`` and ``result:<result id>``. Adding a tag Lever already
    has changes nothing there, so a run repeated after a crash is harmless.
    """

    __tablename__ = "wecp_lever_tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id"))
    key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    opportunity_id: Mapped[str] = mapped_column(sa.String(64))
    tags: Mapped[list] = mapped_column(sa.JSON)
    #: The Lever user to write as, when known when the row is made (the note's author).
    perform_as: Mapped[str | None] = mapped_column(sa.String(64))
    #: Else the application's ids the author is chosen from (``resolve_author``) at run time.
    application: Mapped[dict | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StageMove(DurableWork, db.Model):
    """A move of an opportunity to another Lever stage (“move candidates who pass”), once per key.

    Key: ``advance:<result id>``. The stage is stored here, chosen when the row was made, so the
    job takes only the row's id.
    """

    __tablename__ = "wecp_lever_stage_move"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(sa.ForeignKey("organization.id"), index=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id"))
    key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    opportunity_id: Mapped[str] = mapped_column(sa.String(64))
    stage_id: Mapped[str] = mapped_column(sa.String(64))
    result_id: Mapped[str | None] = mapped_column(sa.ForeignKey("result.id", ondelete="CASCADE"))
    perform_as: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Webhook(db.Model):
    """A Lever webhook of a connection besides its stage-change one (whose id and secret the
    hub's ``Connection`` keeps): one per event, each signed with its own token.

    docs/providers/lever.md#webhooks: one webhook per event, and its signature token is returned
    only when it is created.
    """

    __tablename__ = "wecp_lever_webhook"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(sa.String(64))
    webhook_id: Mapped[str] = mapped_column(sa.String(200))
    secret_ciphertext: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    secret = EncryptedField("secret_ciphertext")

    __table_args__ = (sa.UniqueConstraint("connection_id", "event"),)

    def __init__(self, **kwargs):
        kwargs.setdefault("id", new_uuid())  # the secret's encryption binds to it
        super().__init__(**kwargs)


class ReconcileCursor(db.Model):
    """How far reconciliation has read one connection's linked stages (epoch ms)."""

    __tablename__ = "wecp_lever_reconcile_cursor"

    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id", ondelete="CASCADE"),
                                               primary_key=True)
    updated_at_ms: Mapped[int] = mapped_column(sa.BigInteger)
    ran_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Runs in a row that found nothing: the next run waits longer each time (``flow.quiet_for``).
    quiet_runs: Mapped[int] = mapped_column(default=0, server_default="0")


def record(kind: str, status: str, message: str, *, organization_id: int, opportunity_id=None,
           candidate_name=None, **refs):
    """Add a line to the hub's activity log (committed with the caller's transaction), about an
    opportunity: Lever's reference of the candidate."""
    return activity_log.record("wecp_lever", kind, status, message, organization_id=organization_id,
                               subject_ref=opportunity_id, subject_name=candidate_name, **refs)
