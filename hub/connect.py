"""The connection pages: Connect (by the provider's kind: OAuth consent, a pasted key, a key WeCP
issues), the OAuth callback, partner-key rotation, and Revoke with its preview.

Saving and forgetting a connection, and its tokens, are ``hub.connections``'s; these views only
ask, check and answer in the provider's words.
"""
from __future__ import annotations

import hmac
import json
import logging
import re

import sqlalchemy as sa
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from .auth import admin_required
from .connections import (
    TokenRefreshError,
    _store_tokens,
    connection_of,
    disconnect,
    new_connection,
    proving,
    save_connection,
)
from .extensions import db
from .models import Connection, PartnerKey
from .partner_keys import issue_key, revoke_key, rotate_key, working_keys
from .partners import partner_urls
from .plugin import OAuth2Provider, PartnerKeyProvider, PastedKeyProvider, Plugin, Provider
from .registry import get_plugin

bp = Blueprint("connections", __name__)
log = logging.getLogger("hub.connections")

#: A subdomain (or account name) typed next to a pasted key: it becomes part of a URL.
SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
#: Longest key or token accepted in the paste form.
MAX_PASTED = 500


def _plugin_and_provider(plugin_key: str, name: str | None = None) -> tuple[Plugin, Provider]:
    """The plugin and the provider named by the request (its first when none is named); 404 for
    anything else."""
    try:
        plugin = get_plugin(plugin_key)
    except KeyError:
        abort(404)
    name = name if name is not None else request.values.get("provider") or None
    try:
        return plugin, plugin.provider(name)
    except KeyError:
        abort(404)


def redirect_uri(plugin_key: str) -> str:
    return f"{current_app.config['HUB_BASE_URL']}/integrations/{plugin_key}/connect/callback"


def _oauth_client(plugin_key: str, provider: OAuth2Provider) -> tuple[OAuth2Session, dict]:
    kwargs = provider.client_kwargs(current_app.config)
    client = OAuth2Session(kwargs["client_id"], kwargs["client_secret"],
                           redirect_uri=redirect_uri(plugin_key), **kwargs["client_kwargs"])
    return client, kwargs


def _session_key(plugin_key: str) -> str:
    return f"hub.oauth.{plugin_key}"


def _back(message: str | None = None, category: str = "error"):
    if message:
        flash(message, category)
    return redirect(url_for("settings.index"))


def _save(candidate: Connection, provider: Provider, *, scopes: str = ""):
    """Save a proven connection and say so; the flash names what happened, never a secret."""
    try:
        saved = save_connection(candidate, scopes=scopes)
    except (sa.exc.IntegrityError, TokenRefreshError) as exc:
        db.session.rollback()
        flash(f"Saving the {provider.title} connection failed ({type(exc).__name__}); another "
              f"Connect may have finished at the same time. Reload the page.", "error")
        return None
    if saved.setup_problem:
        flash(f"Connected, but {saved.setup_problem}.", "error")
    return saved.connection


@bp.route("/integrations/<plugin_key>/connect", methods=["GET", "POST"])
@admin_required
def connect(plugin_key):
    """Connect as the provider's kind says: to its consent page (OAuth), the paste form (a key
    the provider issued), or a new key WeCP issues (shown once)."""
    plugin, provider = _plugin_and_provider(plugin_key)
    if provider.auth_mode == "pasted_key":
        return _paste(plugin, provider)
    if request.method != "POST":
        abort(405)
    if provider.auth_mode == "partner_key":
        return _issue(plugin, provider)
    client, kwargs = _oauth_client(plugin_key, provider)
    verifier = generate_token(64) if provider.pkce else None
    url, state = client.create_authorization_url(kwargs["authorize_url"], state=generate_token(32),
                                                 code_verifier=verifier, **kwargs["authorize_params"])
    # Bound to this browser's (signed) session: the callback accepts only this state, once.
    session[_session_key(plugin_key)] = {"state": state, "verifier": verifier,
                                         "user_id": g.user.id, "provider": provider.name}
    return redirect(url)


@bp.route("/integrations/<plugin_key>/connect/callback")
@admin_required
def callback(plugin_key):
    started = session.pop(_session_key(plugin_key), None)
    plugin, provider = _plugin_and_provider(plugin_key, (started or {}).get("provider"))
    if provider.auth_mode != "oauth2":
        abort(404)
    given = request.args.get("state", "")
    if not started or not given or started.get("user_id") != g.user.id \
            or not hmac.compare_digest(str(started["state"]), given):
        return _back(f"The answer from {provider.title} did not match a Connect started here "
                     f"(the state was missing, used or altered). Nothing was saved: click Connect "
                     f"to try again.")
    error = request.args.get("error")
    if error == "access_denied":
        return _back(f"Access to {provider.title} was denied, so nothing was connected. Click "
                     f"Connect and choose Accept to connect {provider.title}.")
    if error or not request.args.get("code"):
        return _back(f"{provider.title} could not grant access ({(error or 'no code')[:60]}). "
                     f"Nothing was saved: click Connect to try again.")

    client, kwargs = _oauth_client(plugin_key, provider)
    try:
        token = client.fetch_token(kwargs["access_token_url"], code=request.args["code"],
                                   code_verifier=started.get("verifier"),
                                   grant_type="authorization_code", timeout=(5, 20))
    except Exception as exc:  # network, 4xx, 5xx, not JSON: all mean "no tokens"
        log.warning("hub.connections.token_exchange_failed plugin=%s error=%s", plugin_key,
                    type(exc).__name__)
        return _back(f"{provider.title} did not exchange the sign-in for tokens "
                     f"({type(exc).__name__}). Nothing was saved: click Connect to try again.")
    if not token.get("access_token") or not token.get("refresh_token"):
        return _back(f"{provider.title} granted no offline access (no refresh token). Nothing was "
                     f"saved: click Connect and accept every permission.")

    candidate = new_connection(g.user.organization_id, plugin, provider, g.user)
    _store_tokens(candidate, token)
    with proving(candidate):
        try:
            plugin.check_connection(candidate)
        except Exception as exc:
            log.warning("hub.connections.check_failed plugin=%s error=%s", plugin_key, exc)
            return _back(f"{provider.title} issued tokens, but a test call with them failed "
                         f"({str(exc)[:200]}). Nothing was saved: click Connect to try again.")
    conn = _save(candidate, provider, scopes=token.get("scope") or " ".join(provider.scopes))
    if conn is None:
        return redirect(url_for("settings.index"))
    account = f" as {conn.external_account_name}" if conn.external_account_name else ""
    flash(f"{provider.title} is connected{account}.", "success")
    return redirect(url_for("settings.index"))


def _paste(plugin: Plugin, provider: PastedKeyProvider):
    """The paste form, and its answer: the key is checked with the provider before anything is
    saved; a refused key is never kept, nor shown back."""
    error = None
    subdomain = ""
    if request.method == "POST":
        key = request.form.get("key", "").strip()
        subdomain = request.form.get("subdomain", "").strip().lower()
        if not key or len(key) > MAX_PASTED or any(c.isspace() for c in key):
            error = f"Paste the {provider.key_label} as {provider.title} shows it: one line, no spaces."
        elif provider.subdomain_label and not SUBDOMAIN.match(subdomain):
            error = f"{provider.subdomain_label}: letters, digits and dashes only, as in your {provider.title} address."
        else:
            candidate = new_connection(g.user.organization_id, plugin, provider, g.user)
            candidate.credentials = json.dumps({"api_key": key})
            if provider.subdomain_label:
                candidate.data = {**(candidate.data or {}), "subdomain": subdomain}
            with proving(candidate):
                try:
                    plugin.check_connection(candidate)
                except Exception as exc:
                    log.warning("hub.connections.check_failed plugin=%s error=%s", plugin.key, type(exc).__name__)
                    error = (f"{provider.title} did not accept this {provider.key_label} "
                             f"({str(exc)[:200]}). Nothing was saved: check it and its permissions, "
                             f"then paste it again.")
            if error is None:
                conn = _save(candidate, provider)
                if conn is not None:
                    account = f" as {conn.external_account_name}" if conn.external_account_name else ""
                    flash(f"{provider.title} is connected{account}.", "success")
                return redirect(url_for("settings.index"))
    return render_template("hub/connect_key.html", plugin=plugin, provider=provider, error=error,
                           subdomain=subdomain), 400 if error else 200


def _key_page(plugin: Plugin, provider: PartnerKeyProvider, conn: Connection, key: str, ending=()):
    """The one page that shows an issued key: never cached, never in a URL or a flash message."""
    response = make_response(render_template(
        "hub/partner_key.html", plugin=plugin, provider=provider, conn=conn, key=key, ending=ending,
        endpoints=partner_urls(plugin)))
    response.headers["Cache-Control"] = "no-store"
    return response


def _issue(plugin: Plugin, provider: PartnerKeyProvider):
    existing = connection_of(g.user.organization_id, plugin.key, provider.name)
    if existing is not None and existing.usable:
        return _back(f"{provider.title} is connected already; use Rotate key for a new key.", "info")
    candidate = new_connection(g.user.organization_id, plugin, provider, g.user)
    # Nothing secret is kept for this kind: the key is stored hashed, apart (PartnerKey). The
    # empty credentials mark the connection as usable, as tokens do for the other kinds.
    candidate.credentials = json.dumps({})
    conn = _save(candidate, provider)
    if conn is None:
        return redirect(url_for("settings.index"))
    _, key = issue_key(conn, g.user.id)
    db.session.commit()
    return _key_page(plugin, provider, conn, key)


def _partner_connection(plugin_key: str):
    plugin, provider = _plugin_and_provider(plugin_key)
    if provider.auth_mode != "partner_key":
        abort(404)
    conn = connection_of(g.user.organization_id, plugin.key, provider.name)
    if conn is None or not conn.usable:
        abort(404)
    return plugin, provider, conn


@bp.route("/integrations/<plugin_key>/keys/rotate", methods=["POST"])
@admin_required
def rotate(plugin_key):
    """A new key; the working ones keep working for the provider's overlap, then stop."""
    plugin, provider, conn = _partner_connection(plugin_key)
    _, key, ending = rotate_key(conn, g.user.id, provider.rotation_overlap)
    db.session.commit()
    return _key_page(plugin, provider, conn, key, ending)


@bp.route("/integrations/<plugin_key>/keys/<int:key_id>/revoke", methods=["POST"])
@admin_required
def revoke_partner_key(plugin_key, key_id):
    """Refuse one key at once (e.g. the old one, once the provider uses the new one)."""
    plugin, provider, conn = _partner_connection(plugin_key)
    row = db.session.scalar(db.select(PartnerKey).filter_by(id=key_id, connection_id=conn.id))
    if row is None:
        abort(404)
    left = [k for k in working_keys(conn.id) if k.id != row.id]
    revoke_key(row, g.user.id)
    db.session.commit()
    if left:
        flash(f"The key ending {row.hint} is revoked: {provider.title} calls with it are refused "
              f"from now on.", "success")
    else:
        flash(f"The key ending {row.hint} is revoked and no key is left: {provider.title} can no "
              f"longer call WeCP until you rotate to a new key.", "error")
    return redirect(url_for("settings.index"))


def _connected(plugin_key: str):
    """The plugin, the provider named by the request, and the organization's connection to it
    (None when there is nothing to revoke)."""
    plugin, provider = _plugin_and_provider(plugin_key)
    conn = connection_of(g.user.organization_id, plugin.key, provider.name)
    if conn is None or conn.status == Connection.NOT_CONNECTED:
        conn = None
    return plugin, provider, conn


@bp.route("/integrations/<plugin_key>/revoke")
@admin_required
def confirm_revoke(plugin_key):
    """What Revoke will do, and what is in flight, before the admin confirms it."""
    from .assessments import services as assessments
    from .outbox import open_work_of_connection

    plugin, provider, conn = _connected(plugin_key)
    if conn is None:
        return _back(f"{provider.title} is not connected.", "info")
    return render_template("hub/revoke.html", plugin=plugin, provider=provider, conn=conn,
                           open_work=open_work_of_connection(conn.id),
                           open_invitations=assessments.open_invitation_count(conn.organization_id, plugin.key))


@bp.route("/integrations/<plugin_key>/revoke", methods=["POST"])
@admin_required
def revoke(plugin_key):
    plugin, provider, conn = _connected(plugin_key)
    if conn is None:
        return _back(f"{provider.title} is not connected.", "info")
    try:
        if conn.usable:
            problem = plugin.on_disconnect(conn)
        elif conn.webhook_id:
            problem = (f"access was already revoked in {provider.title}, so its webhook could not "
                       f"be deleted there; delete it in {provider.title} if it is still listed")
        else:
            problem = None
    except Exception as exc:  # best effort: the hub forgets the credentials whatever the provider says
        problem = f"{type(exc).__name__}: {str(exc)[:200]}"
    disconnect(conn, g.user.id, problem)
    forgotten = {"oauth2": "its tokens are forgotten", "pasted_key": "its key is forgotten",
                 "partner_key": "its keys are refused from now on"}[provider.auth_mode]
    if problem:
        flash(f"{provider.title} is disconnected and {forgotten}, but cleaning up in "
              f"{provider.title} failed: {problem}", "error")
    else:
        flash(f"{provider.title} is disconnected and {forgotten}.", "success")
    if provider.authorized_apps:
        flash(f"WeCP is still listed in {provider.title} until a {provider.title} admin removes it under "
              f"{provider.authorized_apps}.", "info")
    return redirect(url_for("settings.index"))


def authorize_origins(config) -> list[str]:
    """Origins of every OAuth provider's authorize URL (the Connect form's redirect goes there)."""
    from urllib.parse import urlsplit

    from .registry import all_plugins

    origins = []
    for plugin in all_plugins().values():
        for provider in plugin.providers:
            if provider.auth_mode != "oauth2":
                continue
            parts = urlsplit(provider.setting(config, "AUTHORIZE_URL") or "")
            if parts.scheme and parts.netloc:
                origins.append(f"{parts.scheme}://{parts.netloc}")
    return sorted(set(origins))
