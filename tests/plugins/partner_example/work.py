"""The partner example's durable push: one per (connection, the provider's reference).

Its one effect is a Redis ``SET NX`` keyed by the row, so a second run that did it again is seen.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.activity import record
from hub.extensions import db, get_redis
from hub.models import Connection, utcnow
from hub.outbox import DurableWork, durable
from hub.outcomes import Done


class Push(DurableWork, db.Model):
    __tablename__ = "partner_example_push"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id"))
    ref: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __extra_table_args__ = (sa.UniqueConstraint("connection_id", "ref"),)


@durable(Push, queue="default", max_attempts=3)
def push(row: Push):
    r = get_redis()
    if r.set(f"partner:push:effect:{row.id}", row.attempts, nx=True):
        r.incr("partner:push:effects")
    # The recruiter's line, in the job's transaction: written exactly when the push is done.
    connection = db.session.get(Connection, row.connection_id)
    record("partner_example", "invitation", "ok", f"Sent as the Partner ATS asked ({row.ref}).",
           organization_id=connection.organization_id, subject_ref=row.ref)
    return Done(what=f"pushed {row.ref}")
