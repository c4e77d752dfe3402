"""Webhook intake: verify, store in the inbox, enqueue, answer 2xx; plus the sweeper, stats and replay."""
from __future__ import annotations

import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta

import click
import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, jsonify, redirect, request, url_for
from rq.job import Job, JobStatus
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .auth import admin_required, get_scoped_or_404
from .extensions import csrf, db, get_redis
from .jobs import enqueue, get_queue, safe_job_id
from .models import Connection, WebhookDelivery, utcnow
from .plugin import PeriodicJob, Ping, WebhookError
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


def _database_down():
    db.session.rollback()
    log.warning("hub.webhooks.database_unavailable")
    return jsonify({"error": "temporarily unavailable"}), 503, {"Retry-After": "30"}


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

    try:
        connection = db.session.scalar(db.select(Connection).filter_by(
            plugin_key=plugin_key, endpoint_id=endpoint_id))
    except DATABASE_DOWN:
        return _database_down()
    # A revoked connection still stores (work pauses until it is restored, nothing is lost);
    # a disconnected one no longer exists for the provider.
    if connection is None or connection.disconnected_at is not None:
        abort(404)

    try:
        event = source.receive(connection, body, request.headers)
    except Ping:
        return jsonify({"status": "ok"})
    except WebhookError as exc:
        log.info("hub.webhooks.refused plugin=%s status=%s reason=%s", plugin_key, exc.status, exc)
        return jsonify({"error": str(exc) or type(exc).__name__}), exc.status
    except DATABASE_DOWN:
        return _database_down()
    except Exception:
        # A bug in a plugin's parser must not turn a body into a 500: refuse it and say so in the log.
        log.exception("hub.webhooks.source_failed plugin=%s", plugin_key)
        return jsonify({"error": "the delivery could not be read"}), 400

    if not event.event or len(event.event) > 100:
        return jsonify({"error": "bad event name"}), 400
    dedupe_key = event.dedupe_key
    if len(dedupe_key) > 200:
        dedupe_key = "sha256:" + hashlib.sha256(dedupe_key.encode("utf-8", "replace")).hexdigest()

    # Stored as queued at once (the job is enqueued right after the commit): one UPDATE and
    # COMMIT less per delivery. If the enqueue fails the row goes back to received; if this
    # process dies in between, the sweeper finds a queued row without a job and enqueues it.
    delivery = WebhookDelivery(connection_id=connection.id, plugin_key=plugin_key, source=source.name,
                               event=event.event, dedupe_key=dedupe_key, payload=event.payload,
                               status="queued", enqueued_at=utcnow())
    db.session.add(delivery)
    try:
        # The id from the INSERT itself: reading it after the commit would reload the row (a
        # second round trip for every delivery, measured in docs/performance.md).
        db.session.flush()
        delivery_id = delivery.id
        db.session.commit()
    except IntegrityError:
        # The same delivery again (a provider retry, or a concurrent copy): acknowledged once.
        db.session.rollback()
        return jsonify({"status": "duplicate"})
    except DATABASE_DOWN:
        return _database_down()
    except (DataError, StatementError):
        db.session.rollback()
        log.info("hub.webhooks.unstorable plugin=%s", plugin_key)
        return jsonify({"error": "the delivery cannot be stored"}), 400

    try:
        delivery_received.send(current_app._get_current_object(), delivery=delivery)
    except Exception:
        log.exception("hub.webhooks.receiver_failed delivery=%s", delivery_id)
    _enqueue_new(delivery_id)
    return jsonify({"status": "accepted"})


def _enqueue_new(delivery_id: int) -> None:
    """Enqueue a delivery just stored as queued; on failure mark it received for the sweeper."""
    try:
        enqueue("hub.jobs.process_delivery", delivery_id, queue="webhooks",
                job_id=safe_job_id("delivery", delivery_id), fresh=True)
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
    if not ids:
        return 0
    with get_redis().pipeline(transaction=False) as pipe:
        for delivery_id in ids:
            pipe.exists(Job.key_for(safe_job_id("delivery", delivery_id)))
        found = pipe.execute()
    return sum(enqueue_delivery(delivery_id) for delivery_id, exists in zip(ids, found) if not exists)


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
