"""The tiny plugin's durable work: an "echo" whose row says how it should behave, for the hub's tests.

``behaviour`` drives the run: ``ok``; ``fail:N`` (raise on the first N attempts); ``refuse``
(retrying cannot help); ``defer`` (no token yet, on the first attempt); ``unusable`` (the
connection refuses us); ``sleep:S`` (seconds, to be killed mid-run). Its one effect is a Redis
``SET NX`` keyed by the row, so a second run that did the work again is seen.
"""
from __future__ import annotations

import os
import time
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.extensions import db, get_redis
from hub.models import utcnow
from hub.outbox import Defer, DurableWork, Refused, durable
from hub.outcomes import Done, Failed
from hub.plugin import ConnectionUnusable


class Echo(DurableWork, db.Model):
    __tablename__ = "tiny_example_echo"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(100), unique=True)
    connection_id: Mapped[str | None] = mapped_column(sa.ForeignKey("connection.id"))
    behaviour: Mapped[str] = mapped_column(sa.String(50), default="ok")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@durable(Echo, queue="default", max_attempts=6)
def echo(row: Echo):
    r = get_redis()
    r.incr(f"tiny:echo:runs:{row.key}")
    r.set(f"tiny:echo:pid:{row.key}", os.getpid())
    kind, _, arg = row.behaviour.partition(":")
    if kind == "sleep":
        time.sleep(float(arg))
    if kind == "fail" and row.attempts <= int(arg):
        raise RuntimeError(f"failing on purpose, attempt {row.attempts}")
    if kind == "refuse":
        raise Refused("the provider refused this for good")
    if kind == "defer" and row.attempts == 1 and not r.get(f"tiny:echo:deferred:{row.key}"):
        r.set(f"tiny:echo:deferred:{row.key}", 1)
        raise Defer(1.0, "no token")
    if kind == "give_up":
        return Failed(reason="gave up after writing its own line")
    if kind == "unusable":
        raise ConnectionUnusable(row.connection_id or "-", "revoked in the provider")
    if r.set(f"tiny:echo:effect:{row.key}", row.attempts, nx=True):
        r.incr("tiny:echo:effects")
    return Done(what=f"echoed {row.key}")
