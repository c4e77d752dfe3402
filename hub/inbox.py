"""The inbox: webhook deliveries the hub acknowledged, and their whole life cycle.

Intake (``hub.webhooks``) does HTTP only: it asks this module for the connection behind an
endpoint, lets the plugin's source verify the body, and calls ``store``, which commits the
delivery before the 2xx is sent. From there a delivery is durable work (``hub.outbox``): its job
``process_delivery`` hands the stored event and its connection to the plugin's
``WebhookSource.handle`` and records the outcome with the handler's writes, in one transaction.
The outbox's sweeper and resume-on-reconnect cover deliveries as they cover every kind. Here
too: requeue and replay, the card's stats.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import click
import sqlalchemy as sa
from flask import Blueprint, current_app
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db
from .jobs import enqueue_new
from .models import Connection, utcnow
from .outbox import (
    FAILED,
    OPEN,
    PAUSED,
    PENDING,
    DurableWork,
    durable,
    kind_of,
    register_kind,
    requeue,
)
from .outcomes import Failed, Outcome
from .plugin import IncomingEvent
from .registry import all_plugins

log = logging.getLogger("hub.inbox")

#: ``hub events …`` commands.
cli = Blueprint("events", __name__, cli_group="events")
cli.cli.help = "Stored webhook deliveries: replay them."


class WebhookDelivery(DurableWork, db.Model):
    """Every webhook delivery the hub acknowledged, stored before the 2xx."""

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connection.id"), index=True)
    plugin_key: Mapped[str] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(64), default="default")
    event: Mapped[str] = mapped_column(sa.String(100))
    #: The provider's unique id of the delivery: a second one with the same key (for the same
    #: connection) is a duplicate.
    dedupe_key: Mapped[str] = mapped_column(sa.String(200))
    payload: Mapped[dict] = mapped_column(sa.JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    connection: Mapped[Connection] = relationship()

    # Scoped to the connection: one organization's delivery can never shadow another's.
    __extra_table_args__ = (sa.UniqueConstraint("connection_id", "dedupe_key"),)


@durable(WebhookDelivery, queue="webhooks", title="Webhook delivery")
def process_delivery(delivery: WebhookDelivery) -> Outcome:
    """Hand one stored delivery to its plugin's source, once; the outcome is recorded with it.

    A paused connection pauses it (resumed on reconnect); an exception retries it with growing
    intervals. The handler's writes carry their own unique keys, so a second run after a crash
    does nothing twice.
    """
    plugin = all_plugins().get(delivery.plugin_key)
    source = next((s for s in plugin.webhook_sources if s.name == delivery.source), None) if plugin else None
    if source is None:
        return Failed(reason=f"no webhook source {delivery.plugin_key}/{delivery.source} is installed")
    connection = db.session.get(Connection, delivery.connection_id)
    return source.handle(delivery, connection)


def job_id(delivery_id: int) -> str:
    return kind_of(process_delivery).job_id(delivery_id)


#: Seconds a web process keeps its copy of a connection's intake facts (``Endpoint``) after
#: reading it. Correctness does not depend on it (every acceptance is checked in the INSERT,
#: every refusal re-read); it bounds how long a decrypted webhook secret stays in memory.
ENDPOINT_CACHE_SECONDS = 60
#: Most endpoints a web process keeps; past that the copies are dropped and read again.
ENDPOINT_CACHE_SIZE = 10_000


class Endpoint:
    """A web process's copy of what intake needs of one connection, reused across deliveries.

    Reading the row and decrypting its webhook secret for every delivery cost about 30 % of the
    intake's CPU (docs/performance.md, B1). The copy is never trusted on its own: a delivery
    verified with it is stored only if the row still has this endpoint id, is not disconnected and
    holds this very secret ciphertext — checked inside the INSERT (``_insert_statement``), so it
    costs no round trip. When that check fails, or the copy refused a delivery, the row is read
    again and the delivery verified anew. A disconnect, a reconnect (new endpoint id) or a new
    webhook secret therefore takes effect at once, in every process, whatever the cache's age.

    A plugin's ``WebhookSource.receive`` gets it as the connection: the identity fields and
    ``webhook_secret`` come from the copy; reading any other attribute loads the row itself.
    """

    #: Never change for a row (provider and plugin are part of its unique key).
    FIXED = ("id", "organization_id", "plugin_key", "provider", "created_at")

    def __init__(self, row: Connection):
        for name in self.FIXED:
            object.__setattr__(self, name, getattr(row, name))
        object.__setattr__(self, "endpoint_id", row.endpoint_id)
        object.__setattr__(self, "disconnected_at", None)
        object.__setattr__(self, "webhook_secret_ciphertext", row.webhook_secret_ciphertext)
        object.__setattr__(self, "_secret", None)

    @property
    def webhook_secret(self) -> str | None:
        # Decrypted on first use only: some sources never read it.
        if self._secret is None and self.webhook_secret_ciphertext is not None:
            object.__setattr__(self, "_secret", Connection.webhook_secret.__get__(self))
        return self._secret

    __tablename__ = Connection.__tablename__  # the encryption context names the row's table

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        row = db.session.get(Connection, self.id)
        if row is None:
            raise AttributeError(name)
        return getattr(row, name)

    def __setattr__(self, name, value):
        raise AttributeError("a connection seen by webhook intake is read-only")

    def __repr__(self) -> str:
        return f"<Endpoint connection={self.id}>"  # never the secret


class EndpointCache:
    """Endpoint copies of one app in one process, by (plugin key, endpoint id), with a TTL."""

    def __init__(self, seconds: float = ENDPOINT_CACHE_SECONDS, size: int = ENDPOINT_CACHE_SIZE):
        self.seconds, self.size = seconds, size
        self._items: dict[tuple[str, str], tuple[Endpoint, float]] = {}

    def get(self, key: tuple[str, str]) -> Endpoint | None:
        item = self._items.get(key)
        if item is None or item[1] < time.monotonic():
            return None
        return item[0]

    def put(self, key: tuple[str, str], endpoint: Endpoint) -> None:
        if self.seconds <= 0:
            return
        if len(self._items) >= self.size:
            self._items.clear()  # crude but bounded; a re-read costs one SELECT per endpoint
        self._items[key] = (endpoint, time.monotonic() + self.seconds)

    def drop(self, key: tuple[str, str]) -> None:
        self._items.pop(key, None)


def endpoint_cache(app=None) -> EndpointCache:
    app = app or current_app
    cache = app.extensions.get("hub.webhook_endpoints")
    if cache is None:
        cache = app.extensions["hub.webhook_endpoints"] = EndpointCache()
    return cache


def load_endpoint(plugin_key: str, endpoint_id: str) -> Endpoint | None:
    """The connection of this endpoint read from the database, or None (unknown or disconnected)."""
    row = db.session.scalar(db.select(Connection).filter_by(plugin_key=plugin_key, endpoint_id=endpoint_id))
    # A revoked connection still stores (work pauses until it is restored, nothing is lost);
    # a disconnected one no longer exists for the provider.
    if row is None or row.disconnected_at is not None:
        return None
    return Endpoint(row)


_INSERT_COLUMNS = ("connection_id", "plugin_key", "source", "event", "dedupe_key", "payload",
                   "received_at", "status", "due_at", "attempts")
_statements: dict[str, sa.Insert] = {}


def _insert_statement(dialect: str) -> sa.Insert:
    """INSERT … SELECT FROM connection WHERE <still as cached> ON CONFLICT DO NOTHING RETURNING id.

    One round trip stores the delivery, checks that the connection is still the one the
    signature was verified against (``Endpoint``), and skips a duplicate without an error.
    Built once per dialect; SQLAlchemy then reuses its compiled form.
    """
    statement = _statements.get(dialect)
    if statement is not None:
        return statement
    table, conn = WebhookDelivery.__table__, Connection.__table__
    values = [conn.c.id] + [sa.bindparam(name, type_=table.c[name].type) for name in _INSERT_COLUMNS[1:]]
    guard = sa.select(*values).where(
        conn.c.id == sa.bindparam("connection_id", type_=conn.c.id.type),
        conn.c.endpoint_id == sa.bindparam("endpoint_id", type_=conn.c.endpoint_id.type),
        conn.c.disconnected_at.is_(None),
        conn.c.webhook_secret_ciphertext.is_not_distinct_from(
            sa.bindparam("secret_ciphertext", type_=conn.c.webhook_secret_ciphertext.type)),
    )
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # no ON CONFLICT: a duplicate raises IntegrityError, handled as "nothing stored"
        statement = sa.insert(table).from_select(_INSERT_COLUMNS, guard).returning(table.c.id)
        _statements[dialect] = statement
        return statement
    statement = insert(table).from_select(_INSERT_COLUMNS, guard) \
        .on_conflict_do_nothing(index_elements=["connection_id", "dedupe_key"]).returning(table.c.id)
    _statements[dialect] = statement
    return statement


def bounded_dedupe_key(key: str) -> str:
    """The dedupe key as stored: at most 200 characters (longer ones by their hash)."""
    if len(key) > 200:
        return "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
    return key


def store(endpoint_id: str, endpoint: Endpoint, source_name: str, event: IncomingEvent) -> int | None:
    """Store one verified delivery, pending and committed; its id, or None when nothing was stored.

    ``endpoint_id`` is the URL's: the INSERT checks it against the row once more. Nothing is
    stored for a duplicate, or when the connection changed since ``endpoint`` was read.
    """
    now = utcnow()
    params = {"connection_id": endpoint.id, "endpoint_id": endpoint_id,
              "secret_ciphertext": endpoint.webhook_secret_ciphertext, "plugin_key": endpoint.plugin_key,
              "source": source_name, "event": event.event, "dedupe_key": bounded_dedupe_key(event.dedupe_key),
              "payload": event.payload, "received_at": now, "status": PENDING, "due_at": now,
              "attempts": 0}
    engine = db.engine
    statement = _insert_statement(engine.dialect.name)
    if engine.dialect.name != "postgresql":
        with engine.begin() as connection:
            try:
                return connection.execute(statement, params).scalar()
            except IntegrityError:
                return None  # the generic dialect's duplicate
    for attempt in (1, 2):
        connection = _intake_connection(engine)
        try:
            delivery_id = connection.execute(statement, params).scalar()
            connection.commit()  # autocommit: the row was committed before the answer arrived
            return delivery_id
        except Exception as exc:
            _drop_intake_connection()
            # A connection that died while idle (PostgreSQL restarted): once more on a new one.
            # Had the INSERT committed after all, the retry finds the duplicate; the row is then
            # pending without a job, and the sweeper enqueues it.
            if attempt == 1 and isinstance(exc, DBAPIError) and exc.connection_invalidated:
                continue
            raise
    raise AssertionError("unreachable")


def enqueue_stored(delivery_id: int) -> bool:
    """Enqueue the job of a delivery just stored; False (logged) when Redis is unreachable.

    Nothing else is needed on failure: the row is pending, and the sweeper enqueues it.
    """
    try:
        enqueue_new(process_delivery, delivery_id, job_id=job_id(delivery_id))
        return True
    except Exception as exc:
        log.warning("hub.inbox.not_enqueued delivery=%s error=%s", delivery_id, type(exc).__name__)
        return False


_local = threading.local()


def _intake_connection(engine) -> sa.Connection:
    """This thread's autocommit connection for intake INSERTs, kept from one request to the next.

    A pool checkout per delivery costs a ``SELECT 1`` (``pool_pre_ping``) and a separate COMMIT:
    two round trips of three. In autocommit mode the INSERT commits by itself (PostgreSQL
    answers once the commit is flushed, ``synchronous_commit`` on), and a dead connection is
    noticed by the INSERT itself (see ``_insert``).
    """
    connection = getattr(_local, "connection", None)
    if connection is not None and connection.engine is engine and _local.pid == os.getpid() \
            and not connection.closed and not connection.invalidated:
        return connection
    if connection is not None and _local.pid == os.getpid():
        _drop_intake_connection()
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    _local.connection, _local.pid = connection, os.getpid()
    return connection


def _drop_intake_connection() -> None:
    """Close this thread's intake connection for good (its engine changed, or it failed)."""
    connection, _local.connection = getattr(_local, "connection", None), None
    if connection is not None:
        try:
            # Closed, not given back to the pool: an old engine's pool would keep it open.
            connection.invalidate()
            connection.close()
        except Exception:  # already broken: nothing to give back
            pass


def already_stored(connection_id: str, dedupe_key: str) -> bool:
    return db.session.scalar(db.select(WebhookDelivery.id).filter_by(
        connection_id=connection_id, dedupe_key=bounded_dedupe_key(dedupe_key))) is not None


def retry_failed(connection_id: str) -> int:
    """The admin's Retry: run the connection's failed deliveries again."""
    return requeue(kind_of(process_delivery), sa.and_(WebhookDelivery.connection_id == connection_id,
                                                      WebhookDelivery.status == FAILED))


def record_ping(connection_id: str) -> None:
    """A provider's connectivity check reached this connection's webhook URL (kept 90 days)."""
    from redis.exceptions import RedisError

    from .extensions import get_redis

    try:
        get_redis().set(f"hub:webhooks:ping:{connection_id}", int(time.time()), ex=90 * 86400)
    except RedisError:
        pass  # a check mark on the card, not worth failing the provider's check for


def last_ping(connection_id: str) -> datetime | None:
    """When the provider's last connectivity check reached this connection (None: not seen)."""
    from redis.exceptions import RedisError

    from .extensions import get_redis

    try:
        value = get_redis().get(f"hub:webhooks:ping:{connection_id}")
    except RedisError:
        return None
    return datetime.fromtimestamp(int(value), UTC).replace(tzinfo=None) if value else None


def delivery_stats(connection_id: str | None) -> dict:
    """What the Integrations card shows: last event received and counts waiting, failed, paused."""
    stats = {"last_received_at": None, "queued": 0, "failed": 0, "paused": 0, "done": 0, "skipped": 0}
    if not connection_id:
        return stats
    rows = db.session.execute(
        db.select(WebhookDelivery.status, sa.func.count(), sa.func.max(WebhookDelivery.received_at))
        .where(WebhookDelivery.connection_id == connection_id).group_by(WebhookDelivery.status))
    for status, count, last in rows:
        key = "queued" if status in OPEN and status != PAUSED else status
        stats[key] = stats.get(key, 0) + count
        if last and (stats["last_received_at"] is None or last > stats["last_received_at"]):
            stats["last_received_at"] = last
    return stats


# --- CLI: hub events … ----------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``2h``, ``30m``, ``45s``, ``1d`` ago, or an ISO time; returned as naive UTC like the database."""
    now = now or utcnow()
    match = _RELATIVE.match(value)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("use an ISO time (2025-11-28T12:00:00Z) or an age like 2h, 30m") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


@cli.cli.command("replay")
@click.option("--since", required=True, help="ISO time, or an age: 2h, 30m, 1d.")
@click.option("--plugin", "plugin_key", default=None, help="Only deliveries of this plugin.")
@click.option("--status", default=None,
              type=click.Choice(["pending", "running", "done", "skipped", "failed", "paused"]),
              help="Only deliveries in this status.")
def replay_command(since, plugin_key, status):
    """Run stored webhook deliveries again (handlers are idempotent)."""
    where = WebhookDelivery.received_at >= parse_since(since)
    if plugin_key:
        where = sa.and_(where, WebhookDelivery.plugin_key == plugin_key)
    if status:
        where = sa.and_(where, WebhookDelivery.status == status)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery).where(where))
    if not count:
        click.echo("no deliveries match")
        return
    replayed = requeue(kind_of(process_delivery), where)
    click.echo(f"replayed {replayed} deliveries")


def init_app(app) -> None:
    register_kind(app, process_delivery)
    app.register_blueprint(cli)
