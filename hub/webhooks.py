"""Webhook intake: verify, store in the inbox, enqueue, answer 2xx; plus the sweeper, stats and replay."""
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
from flask import Blueprint, abort, current_app, flash, jsonify, redirect, request, url_for
from rq.job import JobStatus
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .auth import admin_required, get_scoped_or_404
from .extensions import csrf, db
from .jobs import enqueue, enqueue_new, get_queue, missing_jobs, safe_job_id
from .models import Connection, WebhookDelivery, utcnow
from .plugin import IncomingEvent, PeriodicJob, Ping, WebhookError
from .registry import all_plugins
from .signals import delivery_received

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks", cli_group="events")
# Providers cannot send our CSRF token; deliveries are authenticated by the plugin's signature
# check instead. The one form of this blueprint (retry failed) checks CSRF itself.
csrf.exempt(bp)

log = logging.getLogger("hub.webhooks")

#: Periodic jobs of the hub itself (the scheduler reads HUB_PERIODIC_JOBS of this module).
HUB_PERIODIC_JOBS = [PeriodicJob("hub.webhooks.sweep_unqueued_deliveries", timedelta(seconds=30),
                                 queue="webhooks")]

#: Errors that mean "the database is not reachable now": answer 503 so the sender retries.
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)

#: Seconds a web process keeps its copy of a connection's intake facts (``Endpoint``) after
#: reading it. Correctness does not depend on it (every acceptance is checked in the INSERT,
#: every refusal re-read); it bounds how long a decrypted webhook secret stays in memory.
ENDPOINT_CACHE_SECONDS = 60
#: Most endpoints a web process keeps; past that the copies are dropped and read again.
ENDPOINT_CACHE_SIZE = 10_000


def _database_down(event: str = "database_unavailable"):
    db.session.rollback()
    log.warning("hub.webhooks.%s", event)
    return jsonify({"error": "temporarily unavailable"}), 503, {"Retry-After": "30"}


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


def _load_endpoint(plugin_key: str, endpoint_id: str) -> Endpoint | None:
    """The connection of this endpoint read from the database, or None (unknown or disconnected)."""
    row = db.session.scalar(db.select(Connection).filter_by(plugin_key=plugin_key, endpoint_id=endpoint_id))
    # A revoked connection still stores (work pauses until it is restored, nothing is lost);
    # a disconnected one no longer exists for the provider.
    if row is None or row.disconnected_at is not None:
        return None
    return Endpoint(row)


_INSERT_COLUMNS = ("connection_id", "plugin_key", "source", "event", "dedupe_key", "payload",
                   "received_at", "status", "enqueued_at", "attempts")
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
        .on_conflict_do_nothing(index_elements=["plugin_key", "dedupe_key"]).returning(table.c.id)
    _statements[dialect] = statement
    return statement


def _insert(endpoint_id: str, endpoint: Endpoint, source_name: str, event: IncomingEvent,
            dedupe_key: str) -> int | None:
    """Store one verified delivery, already ``queued``, committed; its id, or None when nothing was stored.

    ``endpoint_id`` is the URL's: the INSERT checks it against the row once more.
    """
    now = utcnow()
    params = {"connection_id": endpoint.id, "endpoint_id": endpoint_id,
              "secret_ciphertext": endpoint.webhook_secret_ciphertext, "plugin_key": endpoint.plugin_key,
              "source": source_name, "event": event.event, "dedupe_key": dedupe_key,
              "payload": event.payload, "received_at": now, "status": "queued", "enqueued_at": now,
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
            # queued without a job and the sweeper's vanished-job check enqueues it.
            if attempt == 1 and isinstance(exc, DBAPIError) and exc.connection_invalidated:
                continue
            raise
    raise AssertionError("unreachable")


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


def _already_stored(plugin_key: str, dedupe_key: str) -> bool:
    return db.session.scalar(db.select(WebhookDelivery.id).filter_by(
        plugin_key=plugin_key, dedupe_key=dedupe_key)) is not None


def _verify(source, plugin_key: str, endpoint: Endpoint, body: bytes):
    """(event, None) for a delivery the source accepts, else (None, answer, may the row change it)."""
    try:
        event = source.receive(endpoint, body, request.headers)
    except Ping:
        return None, jsonify({"status": "ok"}), False
    except WebhookError as exc:
        log.info("hub.webhooks.refused plugin=%s status=%s reason=%s", plugin_key, exc.status, exc)
        return None, (jsonify({"error": str(exc) or type(exc).__name__}), exc.status), True
    except DATABASE_DOWN:
        return None, _database_down(), False
    except Exception:
        # A bug in a plugin's parser must not turn a body into a 500: refuse it and say so in the log.
        log.exception("hub.webhooks.source_failed plugin=%s", plugin_key)
        return None, (jsonify({"error": "the delivery could not be read"}), 400), True
    if not event.event or len(event.event) > 100:
        return None, (jsonify({"error": "bad event name"}), 400), False
    return event, None, False


@bp.route("/<plugin_key>/<endpoint_id>", methods=["POST"])
def receive(plugin_key: str, endpoint_id: str):
    plugin = all_plugins().get(plugin_key)
    if plugin is None or not plugin.webhook_sources:
        abort(404)
    # Deliveries are routed by connection endpoint id; a plugin's first source receives them.
    source = plugin.webhook_sources[0]
    limit = source.max_bytes or current_app.config["HUB_WEBHOOK_MAX_BYTES"]
    if (request.content_length or 0) > limit:
        abort(413)
    body = request.stream.read(limit + 1)  # never more than the cap, even without Content-Length
    if len(body) > limit:
        abort(413)

    cache, key = endpoint_cache(), (plugin_key, endpoint_id)
    endpoint = cache.get(key)
    cached = endpoint is not None
    while True:
        if endpoint is None:
            try:
                endpoint = _load_endpoint(plugin_key, endpoint_id)
            except DATABASE_DOWN:
                return _database_down()
            if endpoint is None:
                abort(404)
            cache.put(key, endpoint)
        event, refusal, recheck = _verify(source, plugin_key, endpoint, body)
        if event is None:
            if cached and recheck:
                # Refused with a copy that may be stale (a secret rotated since): read the row, try again.
                cache.drop(key)
                endpoint, cached = None, False
                continue
            return refusal
        dedupe_key = event.dedupe_key
        if len(dedupe_key) > 200:
            dedupe_key = "sha256:" + hashlib.sha256(dedupe_key.encode("utf-8", "replace")).hexdigest()
        # Stored as queued at once (the job is enqueued right after the commit): one UPDATE and
        # COMMIT less per delivery. If the enqueue fails the row goes back to received; if this
        # process dies in between, the sweeper finds a queued row without a job and enqueues it.
        try:
            delivery_id = _insert(endpoint_id, endpoint, source.name, event, dedupe_key)
        except DATABASE_DOWN:
            return _database_down()
        except (DataError, StatementError):
            log.info("hub.webhooks.unstorable plugin=%s", plugin_key)
            return jsonify({"error": "the delivery cannot be stored"}), 400
        if delivery_id is not None:
            break
        if cached:
            # Nothing stored: a duplicate, or the connection changed since it was cached.
            cache.drop(key)
            endpoint, cached = None, False
            continue
        try:
            duplicate = _already_stored(plugin_key, dedupe_key)
        except DATABASE_DOWN:
            return _database_down()
        if duplicate:
            # The same delivery again (a provider retry, or a concurrent copy): acknowledged once.
            return jsonify({"status": "duplicate"})
        # The connection changed between reading it and storing: let the sender try again.
        cache.drop(key)
        return _database_down("connection_changed")

    if delivery_received.receivers:
        try:
            delivery = WebhookDelivery(id=delivery_id, connection_id=endpoint.id, plugin_key=plugin_key,
                                       source=source.name, event=event.event, dedupe_key=dedupe_key,
                                       payload=event.payload, status="queued")
            delivery_received.send(current_app._get_current_object(), delivery=delivery)
        except Exception:
            log.exception("hub.webhooks.receiver_failed delivery=%s", delivery_id)
    _enqueue_new(delivery_id)
    return jsonify({"status": "accepted"})


def _enqueue_new(delivery_id: int) -> None:
    """Enqueue a delivery just stored as queued; on failure mark it received for the sweeper."""
    try:
        enqueue_new("hub.jobs.process_delivery", delivery_id, queue="webhooks",
                    job_id=safe_job_id("delivery", delivery_id))
    except Exception as exc:
        log.warning("hub.webhooks.not_enqueued delivery=%s error=%s", delivery_id, type(exc).__name__)
        try:
            db.session.execute(sa.update(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.status == "queued"
            ).values(status="received", enqueued_at=None))
            db.session.commit()
        except DATABASE_DOWN:
            db.session.rollback()  # still queued without a job: the sweeper's vanished-job check


def enqueue_delivery(delivery_id: int) -> bool:
    """Enqueue ``process_delivery`` for a stored delivery and mark it queued.

    False when Redis is unreachable: the row stays ``received`` and the sweeper enqueues it.
    """
    try:
        enqueue("hub.jobs.process_delivery", delivery_id, queue="webhooks",
                job_id=safe_job_id("delivery", delivery_id))
    except Exception as exc:
        db.session.rollback()
        log.warning("hub.webhooks.not_enqueued delivery=%s error=%s", delivery_id, type(exc).__name__)
        return False
    try:
        # Only from `received`: a fast worker may already have finished it.
        db.session.execute(sa.update(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.status == "received"
        ).values(status="queued", enqueued_at=utcnow()))
        db.session.commit()
    except DATABASE_DOWN:
        db.session.rollback()  # the job is queued; the row says received, which is harmless
    return True


def requeue_deliveries(id_query) -> int:
    """Set the deliveries selected by ``id_query`` (a select of ids) back to ``received``, then enqueue them."""
    ids = list(db.session.scalars(id_query))
    if not ids:
        return 0
    db.session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                       .values(status="received", error=None, enqueued_at=None))
    db.session.commit()
    for delivery_id in ids:
        enqueue_delivery(delivery_id)
    return len(ids)


def sweep_unqueued_deliveries() -> str:
    """Periodic: enqueue what intake stored but could not enqueue, and what got stuck since.

    - ``received`` for longer than HUB_SWEEP_AFTER_SECONDS (Redis was down at intake);
    - ``paused`` whose connection is usable again (in case ``connection_restored`` was missed);
    - ``queued`` whose RQ job vanished (re-enqueued), or long past the job timeout whose job
      failed for good (recorded ``failed``, retryable from the Integrations card).
    """
    now = utcnow()
    config = current_app.config
    received = db.select(WebhookDelivery.id).where(
        WebhookDelivery.status == "received",
        WebhookDelivery.received_at < now - timedelta(seconds=config["HUB_SWEEP_AFTER_SECONDS"]),
    ).order_by(WebhookDelivery.id).limit(500)
    count = 0
    for delivery_id in db.session.scalars(received).all():
        count += enqueue_delivery(delivery_id)

    resumed = db.select(WebhookDelivery.id).join(Connection).where(
        WebhookDelivery.status == "paused", Connection.revoked_at.is_(None),
        Connection.disconnected_at.is_(None), Connection.credentials_ciphertext.is_not(None),
    ).limit(500)
    resumed_count = requeue_deliveries(resumed)

    vanished = _requeue_vanished_jobs(now - timedelta(seconds=config["HUB_SWEEP_AFTER_SECONDS"]))

    stale_after = timedelta(seconds=config.get("HUB_JOB_TIMEOUT", 300) + 600)
    stale = db.select(WebhookDelivery.id).where(
        WebhookDelivery.status == "queued", WebhookDelivery.enqueued_at < now - stale_after).limit(500)
    queue = get_queue("webhooks")
    stuck = 0
    for delivery_id in db.session.scalars(stale).all():
        job = queue.fetch_job(safe_job_id("delivery", delivery_id))
        status = job.get_status(refresh=False) if job else None
        if status is None:
            stuck += enqueue_delivery(delivery_id)
        elif status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            db.session.execute(sa.update(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.status == "queued"
            ).values(status="failed", processed_at=now, error=f"job {status}"))
            db.session.commit()
            stuck += 1
    return f"enqueued {count}, resumed {resumed_count}, vanished {vanished}, stuck {stuck}"


def _requeue_vanished_jobs(before: datetime) -> int:
    """Enqueue again ``queued`` rows (enqueued before ``before``) whose RQ job no longer exists.

    Redis restarted without persistence, flushed, or failed over to a replica that lagged: the
    rows say queued, the jobs are gone. RQ keeps a job's key until long after its row is final
    (result and failure TTLs), so a missing key means the job is lost, whatever the row's age.
    """
    ids = list(db.session.scalars(db.select(WebhookDelivery.id).where(
        WebhookDelivery.status == "queued", WebhookDelivery.enqueued_at < before,
    ).order_by(WebhookDelivery.id).limit(500)))
    job_ids = {safe_job_id("delivery", delivery_id): delivery_id for delivery_id in ids}
    return sum(enqueue_delivery(delivery_id) for delivery_id in
               sorted(job_ids[job_id] for job_id in missing_jobs(list(job_ids))))


def delivery_stats(connection_id: str | None) -> dict:
    """What the Integrations card shows: last event received and counts waiting, failed, paused."""
    stats = {"last_received_at": None, "queued": 0, "failed": 0, "paused": 0, "done": 0, "skipped": 0}
    if not connection_id:
        return stats
    rows = db.session.execute(
        db.select(WebhookDelivery.status, sa.func.count(), sa.func.max(WebhookDelivery.received_at))
        .where(WebhookDelivery.connection_id == connection_id).group_by(WebhookDelivery.status))
    for status, count, last in rows:
        key = "queued" if status in ("received", "queued") else status
        stats[key] = stats.get(key, 0) + count
        if last and (stats["last_received_at"] is None or last > stats["last_received_at"]):
            stats["last_received_at"] = last
    return stats


@bp.app_template_global("delivery_stats")
def _delivery_stats_global(connection_id):
    return delivery_stats(connection_id)


@bp.route("/connections/<connection_id>/retry-failed", methods=["POST"])
@admin_required
def retry_failed(connection_id: str):
    csrf.protect()  # the blueprint is exempt for providers; this form is ours
    connection = get_scoped_or_404(Connection, connection_id)
    count = requeue_deliveries(db.select(WebhookDelivery.id).filter_by(
        connection_id=connection.id, status="failed"))
    flash(f"{count} failed event(s) queued again.", "info")
    return redirect(url_for("settings.index"))


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


@bp.cli.command("replay")
@click.option("--since", required=True, help="ISO time, or an age: 2h, 30m, 1d.")
@click.option("--plugin", "plugin_key", default=None, help="Only deliveries of this plugin.")
@click.option("--status", default=None,
              type=click.Choice(["received", "queued", "done", "skipped", "failed", "paused"]),
              help="Only deliveries in this status.")
def replay_command(since, plugin_key, status):
    """Run stored webhook deliveries again (handlers are idempotent)."""
    query = db.select(WebhookDelivery.id).where(WebhookDelivery.received_at >= parse_since(since))
    if plugin_key:
        query = query.where(WebhookDelivery.plugin_key == plugin_key)
    if status:
        query = query.where(WebhookDelivery.status == status)
    ids = list(db.session.scalars(query.order_by(WebhookDelivery.id)))
    if not ids:
        click.echo("no deliveries match")
        return
    db.session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                       .values(status="received", error=None, enqueued_at=None))
    db.session.commit()
    failed = 0
    with click.progressbar(ids, label="replaying", show_pos=True) as bar:
        for delivery_id in bar:
            failed += not enqueue_delivery(delivery_id)
    click.echo(f"replayed {len(ids) - failed} deliveries"
               + (f"; {failed} left for the sweeper (Redis unreachable)" if failed else ""))
