"""Connections of every kind: saving and forgetting one, the credentials API clients call with,
and OAuth token refresh under one lock shared by every process (the pages are ``hub.connect``)."""
from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

import requests
import sqlalchemy as sa
from flask import current_app, g, has_app_context
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from . import signals
from .extensions import db, get_redis
from .jobs import job, safe_job_id
from .models import AuditEvent, Connection, audit, new_uuid, utcnow
from .plugin import ConnectionUnusable, OAuth2Provider, PeriodicJob, Plugin, Provider
from .registry import all_plugins, get_plugin

log = logging.getLogger("hub.connections")

#: Refresh an access token this long before it expires, so a call never starts with a dying one.
REFRESH_MARGIN = timedelta(minutes=5)
#: How long one refresh may hold the per-connection lock, and how long others wait for it.
LOCK_TIMEOUT = 60
LOCK_WAIT = 30


class TokenRefreshError(RuntimeError):
    """The token endpoint could not be reached or failed (5xx, network): try the job again later."""


class _Refused(Exception):
    """The token endpoint refused the refresh token for good (4xx, e.g. ``invalid_grant``)."""

    def __init__(self, text: str, code: str = ""):
        super().__init__(text)
        #: The RFC 6749 error code (``invalid_grant``), or "" when the answer had none.
        self.code = code


# --- tokens -----------------------------------------------------------------------------------

def _credentials(conn: Connection) -> dict:
    return json.loads(conn.credentials)


def _secret(creds: dict) -> str:
    """What an API call carries: an OAuth access token, or a pasted key."""
    return creds["access_token"] if "access_token" in creds else creds["api_key"]


def _provider_title(conn: Connection) -> str:
    provider = _provider_of(conn.plugin_key, conn.provider)
    return provider.title if provider is not None else conn.provider


def _expiring(conn: Connection, margin: timedelta = REFRESH_MARGIN) -> bool:
    return conn.token_expires_at is None or conn.token_expires_at - margin <= utcnow()


def _pending() -> dict:
    return g.setdefault("hub_pending_connections", {}) if has_app_context() else {}


@contextlib.contextmanager
def proving(connection: Connection):
    """While the callback proves new tokens, ``access_token`` serves them from this object.

    Nothing is in the database yet (a failed proof must store nothing), so the usual path
    through the stored row cannot find them.
    """
    pending = _pending()
    pending[connection.id] = connection
    try:
        yield connection
    finally:
        pending.pop(connection.id, None)


def access_token(connection_id: str, *, rejected: str | None = None) -> str:
    """The access token to call the provider with; every API client gets its token here.

    Refreshes when it expires within ``REFRESH_MARGIN``. ``rejected`` is a token the provider
    just answered 401 to: it is replaced (once across all processes) even if it looks valid.
    Raises :class:`ConnectionUnusable` (revoked, disconnected, refused) or
    :class:`TokenRefreshError` (transient: retry later).
    """
    candidate = _pending().get(connection_id)
    if candidate is not None:
        if rejected is not None:
            raise ConnectionUnusable(connection_id, "the provider refused the credentials just given")
        return _secret(_credentials(candidate))
    conn = db.session.get(Connection, connection_id)
    if conn is None or not conn.usable:
        raise ConnectionUnusable(connection_id, why_unusable(conn))
    creds = _credentials(conn)
    if "api_key" in creds:
        # A pasted key never expires by itself and cannot be refreshed: once refused, only a
        # new key helps.
        if rejected is None:
            return creds["api_key"]
        title = _provider_title(conn)
        reason = (f"{title} refused the key pasted into WeCP (deleted or without the permissions "
                  f"it needs); paste a new key to restore it")
        mark_revoked(connection_id, reason)
        raise ConnectionUnusable(connection_id, reason)
    if rejected is None and not _expiring(conn):
        return _credentials(conn)["access_token"]
    return _refresh(connection_id, rejected=rejected)


def refresh_now(connection_id: str) -> str:
    """Refresh whatever the expiry (idle connections); same guarantees as ``access_token``."""
    return _refresh(connection_id, force=True)


def renewal_due(provider, conn, status: str):
    """When the provider's grant lapses (its refresh token's lifetime, counted from the consent),
    so the admin must reconnect by then; None when the provider sets no lifetime."""
    if getattr(provider, "refresh_token_lifetime", None) is None or conn is None \
            or conn.connected_at is None or status in (Connection.NOT_CONNECTED, Connection.REVOKED):
        return None
    return conn.connected_at + provider.refresh_token_lifetime


def why_unusable(conn: Connection | None) -> str:
    """Why work for this connection cannot run now, in words."""
    return "no such connection" if conn is None else conn.unusable_reason


@contextlib.contextmanager
def refresh_lock(connection_id: str):
    """The per-connection lock, shared by every process: one refresh (or token change) at a time."""
    try:
        lock = get_redis().lock(f"hub:connection:{connection_id}:tokens", timeout=LOCK_TIMEOUT,
                                blocking_timeout=LOCK_WAIT)
        acquired = lock.acquire()
    except Exception as exc:  # Redis down: refreshing without the lock could spend the token twice
        raise TokenRefreshError(f"token lock unavailable ({type(exc).__name__})") from exc
    if not acquired:
        raise TokenRefreshError("another process is still refreshing this connection's tokens")
    try:
        yield
    finally:
        try:
            lock.release()
        except Exception:  # expired meanwhile; the next holder re-reads the row anyway
            log.warning("hub.connections.lock_release_failed connection=%s", connection_id)


def _token_session() -> Session:
    """A session of its own for token writes.

    A provider that rotates refresh tokens spends the old one at once, so the new pair must be committed even when the
    caller's transaction later rolls back; and the caller's pending work must not be committed
    with it.
    """
    s = Session(db.engine, expire_on_commit=False)
    if db.engine.dialect.name == "postgresql":
        # A caller holding a lock on this row in its own transaction would otherwise wait forever.
        s.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
    return s


def _sync(connection_id: str, row: Connection, *fields: str) -> None:
    """Show what the token session committed on the caller's copy, without touching its changes."""
    mine = db.session.identity_map.get(db.session.identity_key(Connection, connection_id)) \
        if has_app_context() else None
    if mine is not None:
        for name in fields:
            set_committed_value(mine, name, getattr(row, name))


def _refresh(connection_id: str, *, rejected: str | None = None, force: bool = False) -> str:
    with refresh_lock(connection_id), _token_session() as s:
        # Re-read after taking the lock: another process may have refreshed already.
        row = s.get(Connection, connection_id)
        if row is None or not row.usable:
            raise ConnectionUnusable(connection_id, why_unusable(row))
        creds = _credentials(row)
        if (rejected is not None and creds["access_token"] != rejected) or \
                (rejected is None and not force and not _expiring(row)):
            # Another process refreshed meanwhile: use its tokens, and remember them here.
            _sync(connection_id, row, "credentials_ciphertext", "token_expires_at")
            return creds["access_token"]
        plugin = get_plugin(row.plugin_key)
        provider = plugin.provider(row.provider)
        try:
            fresh = _call_token_endpoint(provider, creds["refresh_token"])
        except _Refused as exc:
            reason = refusal_in_words(provider.title, exc.code)
            _mark_revoked(s, row, reason, error=str(exc))
            raise ConnectionUnusable(connection_id, reason) from None
        except TokenRefreshError as exc:
            row.last_refresh_error = str(exc)
            row.refresh_failures = (row.refresh_failures or 0) + 1
            s.commit()
            _sync(connection_id, row, "last_refresh_error", "refresh_failures")
            log.warning("hub.connections.refresh_failed connection=%s error=%s", connection_id, exc)
            if rejected is None and not force and row.token_expires_at is not None \
                    and row.token_expires_at > utcnow() + timedelta(seconds=30):
                return creds["access_token"]  # still valid for a while: the next call retries
            raise
        _store_tokens(row, fresh)
        row.last_refresh_at = utcnow()
        row.last_refresh_error = None
        row.refresh_failures = 0
        s.commit()  # access and refresh token together, in one commit
        _sync(connection_id, row, "credentials_ciphertext", "token_expires_at", "last_refresh_at",
              "last_refresh_error", "refresh_failures")
        return fresh["access_token"]


def _store_tokens(conn: Connection, token: dict, previous_refresh: str | None = None) -> None:
    expires_in = int(token.get("expires_in") or 3600)
    expires_at = utcnow() + timedelta(seconds=expires_in)
    refresh = token.get("refresh_token") or previous_refresh
    conn.credentials = json.dumps({"access_token": token["access_token"], "refresh_token": refresh,
                                   "expires_at": int(time.time()) + expires_in})
    conn.token_expires_at = expires_at


def _call_token_endpoint(provider: OAuth2Provider, refresh_token: str) -> dict:
    """POST a refresh grant; classify the answer: _Refused (4xx) or TokenRefreshError (else)."""
    config = current_app.config
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    auth = None
    client_id, secret = provider.setting(config, "CLIENT_ID"), provider.setting(config, "CLIENT_SECRET")
    if provider.token_endpoint_auth_method == "client_secret_basic":
        auth = (client_id, secret)
    else:
        data.update(client_id=client_id, client_secret=secret)
    try:
        response = requests.post(provider.setting(config, "TOKEN_URL"), data=data, auth=auth,
                                 headers={"Accept": "application/json"}, timeout=(5, 20))
    except requests.RequestException as exc:
        raise TokenRefreshError(f"token endpoint unreachable ({type(exc).__name__})") from None
    if 400 <= response.status_code < 500:
        # RFC 6749 §5.2: the token endpoint answers 4xx (usually invalid_grant) for a revoked,
        # expired or spent refresh token. Every 4xx is final: only reconnecting helps.
        code = ""
        try:
            body = response.json()
            code = str(body.get("error") or "")[:50]
            error = code or str(response.status_code)
            if body.get("error_description"):
                error += ": " + str(body["error_description"])
        except (ValueError, AttributeError):
            error = f"HTTP {response.status_code}"
        raise _Refused(error[:300], code)
    if response.status_code >= 300:
        raise TokenRefreshError(f"token endpoint answered HTTP {response.status_code}")
    try:
        token = response.json()
        token["access_token"]
    except (ValueError, KeyError, TypeError):
        raise TokenRefreshError("token endpoint answered without an access token") from None
    return token


def refusal_in_words(title: str, code: str) -> str:
    """Why the provider's token endpoint refused to renew the authorization, for the admin's card
    (it follows "<provider> no longer accepts this connection: "), with no OAuth jargon.

    RFC 6749 §5.2 error codes; the code itself goes to the audit log and the worker's log.
    """
    if code == "invalid_client":
        return (f"{title} no longer recognises WeCP's app (its client credentials): reconnecting will "
                f"not help until WeCP support has fixed them")
    if code == "unauthorized_client":
        return f"{title} no longer allows WeCP's app for your account; ask a {title} Super Admin, then reconnect"
    return (f"the authorization WeCP holds was withdrawn in {title} (Settings › Integrations and API › "
            f"Authorized Apps) or lapsed after a long time unused; reconnect to restore it")


def _mark_revoked(s: Session, row: Connection, reason: str, error: str = "") -> None:
    row.revoked_at = utcnow()
    row.revoked_reason = reason
    row.credentials = None  # dead tokens are still secrets: keep none
    row.token_expires_at = None
    # Written in the token session: this event belongs with the revocation's own commit.
    details = {"plugin": row.plugin_key, "reason": reason}
    if error:
        details["error"] = error
    s.add(AuditEvent(action="connection.revoked", organization_id=row.organization_id,
                     target=row.id, details=details))
    s.commit()
    _sync(row.id, row, "revoked_at", "revoked_reason", "credentials_ciphertext", "token_expires_at")
    log.warning("hub.connections.revoked connection=%s error=%s", row.id, error or "-")
    mine = db.session.get(Connection, row.id)
    signals.connection_revoked.send(current_app._get_current_object(), connection=mine or row,
                                    reason=reason)


def mark_revoked(connection_id: str, reason: str) -> None:
    """The provider refuses tokens we believed valid (a second 401): the connection is revoked."""
    with refresh_lock(connection_id), _token_session() as s:
        row = s.get(Connection, connection_id)
        if row is not None and row.revoked_at is None and row.disconnected_at is None:
            _mark_revoked(s, row, reason)


@job("sync", retry=False)
def refresh_idle_connections() -> dict:
    """Periodic (hourly): refresh usable connections whose tokens were not refreshed for their
    provider's ``refresh_idle_after`` (refresh tokens may lapse when unused; a used connection
    refreshes whenever its access token expires).

    Hourly, so a provider whose refresh tokens lapse after a day unused (a ``refresh_idle_after``
    of a few hours) is refreshed well before; only OAuth connections idle for the shortest such
    delay are read, so the cost follows the connections due, not every connection there is.
    """
    now = utcnow()
    delays = {(key, p.name): p.refresh_idle_after for key, plugin in all_plugins().items()
              for p in plugin.providers if getattr(p, "refresh_idle_after", None) is not None}
    counts = {"refreshed": 0, "revoked": 0, "failed": 0}
    if not delays:
        return counts
    last_refresh = sa.func.coalesce(Connection.last_refresh_at, Connection.connected_at, Connection.created_at)
    rows = db.session.execute(db.select(
        Connection.id, Connection.plugin_key, Connection.provider, last_refresh,
    ).where(Connection.usable, last_refresh < now - min(delays.values()),
            Connection.plugin_key.in_({key for key, _ in delays}))).all()
    for connection_id, plugin_key, provider_name, last in rows:
        idle_after = delays.get((plugin_key, provider_name))
        if idle_after is None or last >= now - idle_after:
            continue  # not an OAuth provider with refresh tokens, or refreshed recently
        try:
            refresh_now(connection_id)
            counts["refreshed"] += 1
        except ConnectionUnusable:
            counts["revoked"] += 1
        except TokenRefreshError:
            counts["failed"] += 1
    log.info("hub.connections.idle_refresh %s", counts)
    return counts


def _provider_of(plugin_key: str, provider_name: str):
    try:
        return get_plugin(plugin_key).provider(provider_name)
    except KeyError:
        return None  # the plugin is not loaded in this process: leave its connections alone


#: Admins are emailed this long before a provider's grant lapses, and again this long.
RENEWAL_REMINDERS = (timedelta(days=30), timedelta(days=7))


@job("sync", retry=False)
def remind_renewals() -> dict:
    """Periodic (daily): email the organization's admins when a connection's authorization lapses
    within 30 days, and again within 7 (the card warns too, but nobody may look at it).

    Once per connection, consent, reminder and admin: the email's idempotency key says so, so
    every worker and every day may run this. Reconnecting starts a new consent (no reminder).
    """
    from .mail import queue_email
    from .models import User

    now = utcnow()
    counts = {"emails": 0}
    for conn in db.session.scalars(db.select(Connection).where(Connection.usable)):
        provider = _provider_of(conn.plugin_key, conn.provider)
        lapses = renewal_due(provider, conn, conn.status) if provider is not None else None
        due = [ahead for ahead in RENEWAL_REMINDERS if lapses is not None and lapses - ahead <= now < lapses]
        if not due:
            continue
        ahead = min(due)
        admins = db.session.scalars(db.select(User).where(
            User.organization_id == conn.organization_id, User.role.in_(("admin", "super_admin"))))
        account = f" ({conn.external_account_name})" if conn.external_account_name else ""
        text = (f"{provider.title}'s authorization of WeCP{account} lapses on {lapses:%d %B %Y}. "
                f"After that, candidates moved in {provider.title} are not invited and results are "
                f"not written back.\n\nBefore then, open Settings › Integrations in WeCP and click "
                f"Reconnect; {provider.consent_by or 'an admin'} accepts again in {provider.title}. "
                f"Links, history and settings are kept.\n\n"
                f"{current_app.config['HUB_BASE_URL']}/settings/integrations\n")
        for admin in admins:
            queue_email(admin.email, f"Reconnect {provider.title} to WeCP by {lapses:%d %b %Y}", text,
                        idempotency_key=f"renewal:{conn.id}:{conn.connected_at:%Y%m%dT%H%M%S}:"
                                        f"{ahead.days}:{admin.id}",
                        organization_id=conn.organization_id)
            counts["emails"] += 1
    return counts


#: For the hub's scheduler (another module runs these).
HUB_PERIODIC_JOBS = [PeriodicJob(refresh_idle_connections, timedelta(hours=1)),
                     PeriodicJob(remind_renewals, timedelta(days=1))]


def webhook_url(connection: Connection) -> str:
    """Where the provider delivers this connection's webhooks (the endpoint id is the key)."""
    return f"{current_app.config['HUB_BASE_URL']}/webhooks/{connection.plugin_key}/{connection.endpoint_id}"


# --- saving and forgetting a connection, whatever its kind ------------------------------------

def connection_of(organization_id: int, plugin_key: str, provider_name: str) -> Connection | None:
    """The organization's connection to one provider of a plugin (in any state), or None."""
    return db.session.scalar(db.select(Connection).filter_by(
        organization_id=organization_id, plugin_key=plugin_key, provider=provider_name))


def new_connection(organization_id: int, plugin: Plugin, provider: Provider, user) -> Connection:
    """A connection not saved yet: fill in its credentials, prove them (``proving``), then
    ``save_connection``. It keeps the id and plugin data of the organization's earlier
    connection to this provider, so links, history and paused work stay attached to it."""
    existing = connection_of(organization_id, plugin.key, provider.name)
    candidate = Connection(id=existing.id if existing else new_uuid(), organization_id=organization_id,
                           plugin_key=plugin.key, provider=provider.name, connected_by_id=user.id,
                           data=dict(existing.data or {}) if existing else {})
    candidate.connected_by = user
    return candidate


@dataclass(frozen=True)
class Saved:
    """What ``save_connection`` did."""

    connection: Connection
    #: The connection was revoked or disconnected before: its paused work resumes.
    restored: bool
    #: Why the plugin's on-connect job could not be queued ("" when it was, or there is none).
    setup_problem: str = ""


def save_connection(candidate: Connection, *, scopes: str = "") -> Saved:
    """Store a proven connection of any kind, then send its signals and queue its plugin's
    on-connect job: the one way a connection is made (OAuth callback, pasted key, issued key).

    An earlier connection of the organization to the provider is replaced in place with a new
    endpoint id (deliveries to the old URL stop finding it). Raises ``sqlalchemy.exc.IntegrityError``
    when another Connect saved at the same moment, ``TokenRefreshError`` when the lock is
    unavailable; nothing is saved then.
    """
    plugin = get_plugin(candidate.plugin_key)
    with refresh_lock(candidate.id):
        existing = connection_of(candidate.organization_id, candidate.plugin_key, candidate.provider)
        restored = existing is not None and not existing.usable
        conn = existing or Connection(id=candidate.id, organization_id=candidate.organization_id,
                                      plugin_key=candidate.plugin_key, provider=candidate.provider)
        if existing is None:
            db.session.add(conn)
        else:
            # The old webhook id stays so the on-connect job can delete that webhook at the provider.
            conn.endpoint_id = secrets.token_urlsafe(24)
        conn.credentials_ciphertext = candidate.credentials_ciphertext  # same row id: same binding
        conn.token_expires_at = candidate.token_expires_at
        conn.scopes = scopes
        conn.external_account_id = candidate.external_account_id
        conn.external_account_name = candidate.external_account_name
        conn.data = dict(candidate.data or {})
        conn.connected_by_id = candidate.connected_by_id
        now = utcnow()
        conn.connected_at = now
        conn.webhook_secret = None
        for name in ("setup_completed_at", "setup_error", "last_refresh_error", "revoked_at",
                     "revoked_reason", "disconnected_at"):
            setattr(conn, name, None)
        if plugin.on_connect_job is None:
            conn.setup_completed_at = now  # nothing to set up at the provider: ready now
        conn.refresh_failures = 0
        conn.last_refresh_at = now
        conn.last_used_at = None  # a new connection: the provider has not called with it yet
        audit("connection.connected", organization_id=conn.organization_id,
              user_id=candidate.connected_by_id, target=conn.id, plugin=plugin.key,
              provider=conn.provider, account=conn.external_account_name, reconnect=existing is not None)
        db.session.commit()
    app = current_app._get_current_object()
    signals.connection_created.send(app, connection=conn)
    if restored:
        signals.connection_restored.send(app, connection=conn)
    problem = ""
    if plugin.on_connect_job:
        from .jobs import enqueue

        try:
            # Ahead of everything else: after a reconnect the provider sends to the new endpoint
            # only once this job has moved the webhook there, and the resumed deliveries would
            # otherwise be taken first (docs/reliability.md, "Revoked mid-batch").
            enqueue(plugin.connect_job(), conn.id, job_id=safe_job_id("on-connect", conn.id),
                    queue="webhooks", at_front=True)
        except Exception as exc:  # the caller says so; never a 500
            log.exception("hub.connections.on_connect_job_failed connection=%s", conn.id)
            problem = f"setting up failed to start ({type(exc).__name__})"
    return Saved(conn, restored, problem)


def disconnect(conn: Connection, user_id: int | None, cleanup_problem: str | None) -> None:
    """Forget a connection's credentials (and refuse its partner keys) at once; its row, links and
    history stay, and its open work pauses until it is connected again."""
    from .models import PartnerKey

    with refresh_lock(conn.id):
        db.session.refresh(conn)
        now = utcnow()
        conn.credentials = None
        conn.webhook_secret = None
        conn.webhook_id = None if cleanup_problem is None else conn.webhook_id
        conn.token_expires_at = None
        conn.setup_completed_at = None
        conn.setup_error = None
        conn.disconnected_at = now
        db.session.execute(db.update(PartnerKey).where(
            PartnerKey.connection_id == conn.id, PartnerKey.revoked_at.is_(None)).values(revoked_at=now))
        audit("connection.disconnected", organization_id=conn.organization_id, user_id=user_id,
              target=conn.id, plugin=conn.plugin_key, provider_cleanup_error=cleanup_problem)
        db.session.commit()
    signals.connection_disconnected.send(current_app._get_current_object(), connection=conn)
