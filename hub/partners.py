"""Partner endpoints: the routes a provider calls (``Plugin.partner_blueprint``), mounted at
``/partners/<key>``.

Each call is authenticated by a partner key WeCP issued (``hub.partner_keys``), in the scheme the
provider uses (HTTP Basic with the key as user name, or a bearer header), which names one
connection and so one organization: views read it from ``caller()`` and nothing else. No session
and no CSRF (nothing ambient authenticates the call), a body limit, a rate limit per key, an
audit entry for every write and every refused key, and every error answered as JSON in the
provider's shape (``Plugin.partner_error``), never as a page.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, g, jsonify, request
from redis.exceptions import RedisError
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, TooManyRequests, Unauthorized

from .extensions import csrf, db, get_redis
from .models import Connection, PartnerKey, audit, utcnow
from .partner_keys import find_key, note_refused
from .ratelimit import TokenBucket, limit_client

log = logging.getLogger("hub.partners")

#: The app extension mapping each mounted partner blueprint's name to its plugin.
BLUEPRINTS = "hub.partner_blueprints"
#: How precisely a key's last use is kept (one write a minute at most per key).
USE_RESOLUTION = timedelta(minutes=1)
#: Methods that change something: audited on every call.
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Caller:
    """Who is calling a partner endpoint: the connection its key belongs to."""

    plugin_key: str
    connection_id: str
    organization_id: int
    key_id: int


def caller() -> Caller:
    """The authenticated caller of the current partner call (set before the view runs)."""
    return g.hub_partner


def mount(app, plugin, blueprint) -> None:
    """Register a plugin's partner blueprint under ``/partners/<key>``."""
    app.register_blueprint(blueprint, url_prefix=f"/partners/{plugin.key}")
    csrf.exempt(blueprint)  # no cookie authenticates a partner call: there is nothing to forge
    app.extensions.setdefault(BLUEPRINTS, {})[blueprint.name] = plugin


def partner_urls(plugin, app=None) -> list[tuple[str, str]]:
    """The partner endpoints of ``plugin`` to give the provider: (view name, absolute URL)."""
    app = app or current_app
    names = {name for name, owner in app.extensions.get(BLUEPRINTS, {}).items() if owner.key == plugin.key}
    base = app.config["HUB_BASE_URL"]
    return sorted((rule.endpoint.split(".", 1)[1], base + rule.rule) for rule in app.url_map.iter_rules()
                  if rule.endpoint.split(".", 1)[0] in names and "<" not in rule.rule)


def _plugin():
    """The plugin whose partner endpoint is being called, or None."""
    return current_app.extensions.get(BLUEPRINTS, {}).get(request.blueprint or "")


def _presented(scheme: str) -> str:
    """The key in the Authorization header, in the provider's scheme ("" when there is none)."""
    header = request.headers.get("Authorization", "")
    kind, _, value = header.partition(" ")
    if scheme == "bearer":
        return value.strip() if kind.lower() == "bearer" else ""
    if kind.lower() != "basic":
        return ""
    try:
        user, _, _ = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""
    return user


def _refuse(scheme: str, why: str, organization_id: int | None = None, connection_id: str | None = None,
            key_id: int | None = None):
    limit_client("partner-refused", current_app.config["HUB_API_CALLS_PER_MINUTE"])
    audit("partner.refused", organization_id=organization_id, target=connection_id or request.path[:200],
          reason=why, path=request.path[:200], key_id=key_id)
    db.session.commit()
    log.warning("hub.partners.refused path=%s reason=%s", request.path[:200], why)
    challenge = WWWAuthenticate(scheme, {"realm": "WeCP"})
    raise Unauthorized("invalid or missing partner key", www_authenticate=challenge)


def _limit_key(key_id: int, provider) -> None:
    per_minute = getattr(provider, "calls_per_minute", None) or current_app.config["HUB_PARTNER_CALLS_PER_MINUTE"]
    digest = hashlib.sha256(str(key_id).encode()).hexdigest()[:16]
    try:
        wait = TokenBucket(get_redis(), f"hub:rl:partner:{digest}", rate=per_minute / 60,
                           burst=per_minute).try_acquire()
    except RedisError:
        log.warning("hub.partners.ratelimit_unavailable")
        return
    if wait > 0:
        raise TooManyRequests("too many calls with this key; wait and try again",
                              retry_after=max(1, math.ceil(wait)))


def authenticate() -> None:
    """Before every request: on a partner endpoint, find the caller by its key or refuse it."""
    plugin = _plugin()
    if plugin is None:
        return
    limit = current_app.config["HUB_PARTNER_MAX_BYTES"]
    # Checked before the body is read; a body sent without a length is cut at the same size.
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(f"the body is larger than {limit} bytes")
    request.max_content_length = limit
    provider = next((p for p in plugin.providers if p.auth_mode == "partner_key"), None)
    scheme = provider.scheme if provider is not None else "basic"
    presented = _presented(scheme)
    key = find_key(presented, plugin.key)
    if key is None:
        ended = note_refused(presented, plugin.key)
        if ended is not None:
            _refuse(scheme, "a revoked or expired key", organization_id=ended.organization_id,
                    connection_id=ended.connection_id, key_id=ended.id)
        _refuse(scheme, "unknown, revoked or expired key, or its connection is not usable")
    _limit_key(key.id, provider)
    g.hub_partner = Caller(plugin.key, key.connection_id, key.organization_id, key.id)
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > USE_RESOLUTION:
        db.session.execute(db.update(PartnerKey).where(PartnerKey.id == key.id).values(last_used_at=now))
        db.session.execute(db.update(Connection).where(Connection.id == key.connection_id).values(last_used_at=now))
        db.session.commit()


def record(response):
    """After a partner call that writes: an audit entry with its endpoint and answer."""
    who = g.get("hub_partner")
    if who is not None and request.method in WRITES:
        try:
            audit("partner.call", organization_id=who.organization_id, target=who.connection_id,
                  endpoint=request.endpoint, method=request.method, status=response.status_code,
                  key_id=who.key_id)
            db.session.commit()
        except Exception:  # the answer is already decided; the log keeps the gap visible
            db.session.rollback()
            log.exception("hub.partners.audit_failed endpoint=%s", request.endpoint)
    return response


def error_body(exc: HTTPException):
    """An error on a partner endpoint as JSON in the provider's shape; None elsewhere."""
    plugin = _plugin() if request.path.startswith("/partners/") else None
    if plugin is None:
        return None
    body = plugin.partner_error(exc.code or 500, exc.description or exc.name)
    return jsonify(body)


def init_app(app) -> None:
    app.before_request(authenticate)
    app.after_request(record)
