"""Webhook intake, HTTP only: ``POST /webhooks/<plugin>/<endpoint id>`` → verify, store, answer.

Every 2xx is sent after its delivery is committed (``hub.inbox.store``); a body that cannot be
verified or stored gets a clear 4xx and leaves nothing behind; a database that cannot be reached
gets a 503 so the provider retries. What happens to a stored delivery is ``hub.inbox``'s.
"""
from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, request, url_for
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from . import inbox
from .auth import admin_required, get_scoped_or_404
from .extensions import csrf, db
from .inbox import Endpoint, WebhookDelivery, endpoint_cache, record_ping
from .metrics import WEBHOOK_DELIVERIES
from .models import Connection
from .plugin import Ping, WebhookError
from .registry import all_plugins
from .signals import delivery_received

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
# Providers cannot send our CSRF token; deliveries are authenticated by the plugin's signature
# check instead. The one form of this blueprint (retry failed) checks CSRF itself.
csrf.exempt(bp)

log = logging.getLogger("hub.webhooks")

#: Errors that mean "the database is not reachable now": answer 503 so the sender retries.
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)


def _database_down(event: str = "database_unavailable"):
    db.session.rollback()
    log.warning("hub.webhooks.%s", event)
    return jsonify({"error": "temporarily unavailable"}), 503, {"Retry-After": "30"}


def _verify(source, plugin_key: str, endpoint: Endpoint, body: bytes):
    """(event, None) for a delivery the source accepts, else (None, answer, may the row change it)."""
    try:
        event = source.receive(endpoint, body, request.headers)
    except Ping:
        record_ping(endpoint.id)  # "webhook reachable" on the card
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


#: The answer's status code → the intake outcome counted (a 200's own word is in its body).
INTAKE_OUTCOMES = {400: "refused", 401: "refused", 403: "refused", 404: "unknown_endpoint", 413: "too_large",
                   503: "unavailable"}


@bp.after_request
def _count_intake(response):
    if request.endpoint == "webhooks.receive":
        plugin = (request.view_args or {}).get("plugin_key")
        if response.status_code == 200:
            outcome = {"accepted": "accepted", "duplicate": "duplicate", "ok": "ping"}.get(
                (response.get_json(silent=True) or {}).get("status"), "other")
        else:
            outcome = INTAKE_OUTCOMES.get(response.status_code, "other")
        WEBHOOK_DELIVERIES.labels(plugin if plugin in all_plugins() else "unknown", outcome).inc()
    return response


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
                endpoint = inbox.load_endpoint(plugin_key, endpoint_id)
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
        # Stored pending and committed; its job is enqueued right after. If the enqueue fails, or
        # this process dies in between, the outbox's sweeper finds the row without a job.
        try:
            delivery_id = inbox.store(endpoint_id, endpoint, source.name, event)
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
            duplicate = inbox.already_stored(endpoint.id, event.dedupe_key)
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
                                       source=source.name, event=event.event,
                                       dedupe_key=inbox.bounded_dedupe_key(event.dedupe_key),
                                       payload=event.payload, status="pending")
            delivery_received.send(current_app._get_current_object(), delivery=delivery)
        except Exception:
            log.exception("hub.webhooks.receiver_failed delivery=%s", delivery_id)
    inbox.enqueue_stored(delivery_id)
    return jsonify({"status": "accepted"})


@bp.route("/connections/<connection_id>/retry-failed", methods=["POST"])
@admin_required
def retry_failed(connection_id: str):
    csrf.protect()  # the blueprint is exempt for providers; this form is ours
    connection = get_scoped_or_404(Connection, connection_id)
    count = inbox.retry_failed(connection.id)
    flash(f"{count} failed event(s) queued again.", "info")
    return redirect(url_for("settings.index"))


@bp.app_template_global("delivery_stats")
def _delivery_stats_global(connection_id):
    return inbox.delivery_stats(connection_id)
