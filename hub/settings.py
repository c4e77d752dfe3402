"""Settings > Integrations: one card per registered plugin with its connection status."""
from __future__ import annotations

from datetime import timedelta

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
    url_for,
)

from .auth import OPERATOR_HOME, admin_required, login_required
from .connect import authorize_origins
from .connections import renewal_due
from .extensions import db
from .models import Connection, utcnow
from .partner_keys import refused_keys, working_keys
from .registry import all_plugins

bp = Blueprint("settings", __name__)


def integration_cards(org_id: int) -> list[dict]:
    """What the page and the API show: each plugin with one slot per provider (its connection,
    status, checklist, alerts, hints and renewal), the card's status summing them up."""
    connections = {(c.plugin_key, c.provider): c for c in db.session.scalars(
        db.select(Connection).filter_by(organization_id=org_id))}
    cards = []
    for plugin in all_plugins().values():
        index = f"{plugin.key}.index"
        # A plugin without a page of its own has its activity log shown by the hub.
        page = url_for(index) if index in current_app.view_functions else \
            url_for("settings.activity", plugin_key=plugin.key)
        slots = [_slot(plugin, provider, connections.get((plugin.key, provider.name)))
                 for provider in plugin.providers]
        first = slots[0] if slots else {"provider": None, "connection": None, "status": Connection.NOT_CONNECTED,
                                        "renew_by": None, "renew_soon": False}
        cards.append({**first, "plugin": plugin, "page": page, "slots": slots,
                      "status": card_status([slot["status"] for slot in slots]),
                      "steps": [step for slot in slots for step in slot["steps"]],
                      "alerts": [alert for slot in slots for alert in slot["alerts"]],
                      "hints": [hint for slot in slots for hint in slot["hints"]]})
    return cards


def _slot(plugin, provider, conn) -> dict:
    status = conn.status if conn else Connection.NOT_CONNECTED
    renew_by = renewal_due(provider, conn, status)
    return {"plugin": plugin, "provider": provider, "connection": conn, "status": status,
            "steps": setup_steps(plugin, provider, conn, status),
            "alerts": card_alerts(plugin, conn, provider), "hints": card_hints(plugin, conn, status),
            "partner_keys": working_keys(conn.id) if conn is not None and conn.usable
            and provider.auth_mode == "partner_key" else [],
            "renew_by": renew_by,
            "renew_soon": renew_by is not None and renew_by - utcnow() <= RENEWAL_WARNING}


#: The card's badge when some of its providers are connected and others not.
PARTLY_CONNECTED = "Partly connected"


def card_status(statuses: list[str]) -> str:
    """One badge for a card of several connections: the one needing action most."""
    if not statuses:
        return Connection.NOT_CONNECTED
    if len(set(statuses)) == 1:
        return statuses[0]
    for status in (Connection.REVOKED, Connection.NEEDS_ATTENTION, Connection.SETTING_UP):
        if status in statuses:
            return status
    return PARTLY_CONNECTED


#: How long before the authorization lapses the card warns that it must be renewed.
RENEWAL_WARNING = timedelta(days=30)

#: Under "Connected to …" while not connected: what Connect does, by connection kind.
_CONNECT_HINTS = {
    "oauth2": "Click Connect; {who} accepts in {title}.",
    "pasted_key": "Click Connect and paste a {label} from {title}.",
    "partner_key": "Click Connect: WeCP issues a key, which you give to {title}.",
}


def setup_steps(plugin, provider, conn, status: str) -> list:
    """The card's checklist: connected (the hub's step, and for an issued key the provider's first
    call with it), then the plugin's own steps."""
    from .plugin import SetupStep

    if provider is None or status == Connection.REVOKED:
        return []  # a revoked card shows why and Reconnect instead
    active = status == Connection.ACTIVE
    waiting = _CONNECT_HINTS[provider.auth_mode].format(
        who=provider.consent_by or "an admin", title=provider.title,
        label=getattr(provider, "key_label", "key"))
    hints = {Connection.NOT_CONNECTED: waiting, Connection.SETTING_UP: f"Finishing the setup in {provider.title}…"}
    steps = [SetupStep(f"Connected to {provider.title}", active, hints.get(status, ""))]
    if provider.auth_mode == "partner_key" and conn is not None and conn.usable:
        called = conn.last_used_at is not None
        steps.append(SetupStep(f"{provider.title} called WeCP with its key", called,
                               f"Last call {conn.last_used_at:%Y-%m-%d %H:%M} UTC." if called else
                               provider.hand_over or f"Give the key to {provider.title}."))
    if conn is not None and conn.usable:
        try:
            steps += plugin.setup_steps(conn)
        except Exception:  # a checklist must never break the page
            current_app.logger.warning("hub.settings.setup_steps_failed plugin=%s", plugin.key, exc_info=True)
    return steps


#: Work that failed for good is shown on the card for this long (or until it is retried).
FAILED_WORK_SHOWN = timedelta(days=7)


def card_hints(plugin, conn, status: str) -> list[str]:
    """The plugin's reminders for a connected card (none when a plugin's check fails: logged)."""
    if conn is None or status in (Connection.NOT_CONNECTED, Connection.REVOKED):
        return []
    try:
        return list(plugin.hints(conn))
    except Exception:  # a plugin's bug must not take the Integrations page down
        current_app.logger.warning("hub.settings.hints_failed plugin=%s", plugin.key, exc_info=True)
        return list(plugin.connected_hints)


def card_alerts(plugin, conn, provider=None) -> list:
    """What the card warns of for a usable connection (nothing otherwise: the status says it
    all): work for it that failed for good, then the plugin's own alerts."""
    if conn is None or not conn.usable:
        return []
    alerts = failed_work_alerts(conn, provider.title if provider else plugin.title)
    if provider is not None and provider.auth_mode == "partner_key":
        alerts += refused_key_alerts(conn, provider)
    try:
        alerts += list(plugin.alerts(conn))
    except Exception:  # a warning must never break the page
        current_app.logger.warning("hub.settings.alerts_failed plugin=%s", plugin.key, exc_info=True)
    return alerts


def failed_work_alerts(conn, where: str) -> list:
    """Writes to the provider (notes, tags…) that failed for good, with the last reason and
    where to retry them. Webhook deliveries have their own line on the card."""
    from .inbox import WebhookDelivery
    from .outbox import failed_work_of_connection
    from .plugin import CardAlert

    failed = failed_work_of_connection(conn.id, utcnow() - FAILED_WORK_SHOWN, skip=(WebhookDelivery,))
    if not failed:
        return []
    total = sum(count for _, count, _ in failed)
    kinds = ", ".join(f"{title}: {count}" for title, count, _ in failed)
    last = next((error for _, _, error in failed if error), "")
    return [CardAlert(
        f"{total} {'write' if total == 1 else 'writes'} to {where} failed and will not be tried again "
        f"{'by itself' if total == 1 else 'by themselves'} ({kinds}){f'. The last reason: {last}' if last else ''}.",
        "Fix the cause, then retry them.", level="error",
        link=url_for("work.index"), link_label="Work needing attention (Retry)")]


def refused_key_alerts(conn, provider) -> list:
    """The provider still calls with a key that was revoked or has expired (in the last week):
    its calls are refused, so nothing it sends arrives until it is given the current key."""
    from .plugin import CardAlert

    alerts = []
    for row in refused_keys(conn.id, utcnow() - FAILED_WORK_SHOWN):
        why = f"you revoked on {row.revoked_at:%Y-%m-%d}" if row.revoked_at is not None \
            else f"was replaced and stopped working on {row.expires_at:%Y-%m-%d %H:%M} UTC"
        calls = f"{row.refused_count} call{'' if row.refused_count == 1 else 's'}"
        alerts.append(CardAlert(
            f"{provider.title} still calls WeCP with the key ending …{row.hint}, which {why}: "
            f"{calls} refused, the last at {row.refused_at:%Y-%m-%d %H:%M} UTC. Nothing it sent "
            f"with that key reached WeCP.",
            f"Give {provider.title} the current key (Rotate key shows a new one once). "
            + (provider.hand_over or ""), level="error"))
    return alerts


def card_json(card: dict) -> dict:
    """A card for the API: the first provider's connection at the top (as a card of one provider
    has always been), each provider's in ``connections``."""
    return {
        **_slot_json(card),
        "key": card["plugin"].key,
        "title": card["plugin"].title,
        "description": card["plugin"].description,
        "status": card["status"],
        "steps": [{"label": st.label, "done": st.done, "hint": st.hint} for st in card["steps"]],
        "alerts": [{"level": a.level, "message": a.message, "next_step": a.next_step, "link": a.link}
                   for a in card["alerts"]],
        "connections": [{"provider": slot["provider"].name, "kind": slot["provider"].auth_mode,
                         "status": slot["status"], **_slot_json(slot)} for slot in card["slots"]],
    }


def _slot_json(slot: dict) -> dict:
    conn = slot["connection"]
    connected = conn is not None and slot["status"] != Connection.NOT_CONNECTED
    return {
        "account": conn.external_account_name if connected else None,
        "connected_by": conn.connected_by.email if connected and conn.connected_by else None,
        "connected_at": conn.connected_at.isoformat() + "Z" if connected and conn.connected_at else None,
        "revoked_reason": conn.revoked_reason if connected else None,
        "setup_error": conn.setup_error if connected else None,
        "last_refresh_error": conn.last_refresh_error if connected else None,
        "hints": list(slot.get("hints", [])) if connected else [],
        "renew_by": slot["renew_by"].isoformat() + "Z" if slot["renew_by"] else None,
        "keys": [{"id": k.id, "ends_with": k.hint, "created_at": k.created_at.isoformat() + "Z",
                  "expires_at": k.expires_at.isoformat() + "Z" if k.expires_at else None,
                  "last_used_at": k.last_used_at.isoformat() + "Z" if k.last_used_at else None}
                 for k in slot.get("partner_keys", [])],
    }


def get_setting(org_id: int, plugin_key: str, key: str):
    """An organization's value of a plugin setting, else the plugin's default."""
    from .models import IntegrationSetting
    from .registry import get_plugin

    setting = next(s for s in get_plugin(plugin_key).settings if s.key == key)
    # One query for all of the organization's values of the plugin, kept for the rest of the job
    # or request (a note reads four of them); ``set_setting`` drops the copy.
    cache = g.setdefault("hub_settings", {})
    rows = cache.get((org_id, plugin_key))
    if rows is None:
        rows = cache[(org_id, plugin_key)] = {row.key: row for row in db.session.scalars(
            db.select(IntegrationSetting).filter_by(organization_id=org_id, plugin_key=plugin_key))}
    row = rows.get(key)
    if row is None:
        return setting.default
    return row.secret_value if setting.secret else row.value


def set_setting(org_id: int, plugin_key: str, key: str, value) -> None:
    """Store an organization's value of a plugin setting (secret ones encrypted)."""
    from .models import IntegrationSetting
    from .registry import get_plugin

    setting = next(s for s in get_plugin(plugin_key).settings if s.key == key)
    g.get("hub_settings", {}).pop((org_id, plugin_key), None)
    row = db.session.scalar(db.select(IntegrationSetting).filter_by(
        organization_id=org_id, plugin_key=plugin_key, key=key))
    if row is None:
        row = IntegrationSetting(organization_id=org_id, plugin_key=plugin_key, key=key)
        db.session.add(row)
    if setting.secret:
        row.value, row.secret_value = None, value
    else:
        row.value = value


@bp.route("/")
def home():
    # An operator belongs to no organization: their home is the job dashboard (#40, 7), where
    # "/" showed them the sign-in page while signed in.
    if g.get("user") is None and g.get("operator") is not None:
        return redirect(OPERATOR_HOME)
    return _member_home()


@login_required
def _member_home():
    return render_template("hub/home.html")


@bp.route("/settings/emails", methods=["GET", "POST"])
@admin_required
def emails():
    """Who candidates' emails come from and where their replies go, for the organization."""
    from .assessments.services import valid_email
    from .models import Organization, audit

    organization = db.session.get(Organization, g.user.organization_id)
    error = None
    if request.method == "POST":
        name = " ".join(request.form.get("sender_name", "").split())[:200]
        reply_to = request.form.get("reply_to", "").strip()
        if reply_to and not valid_email(reply_to):
            error = "Reply-To must be one email address, e.g. recruiting@acme.example."
        else:
            organization.email_sender_name, organization.email_reply_to = name or None, reply_to or None
            audit("organization.email_settings", organization_id=organization.id, user_id=g.user.id,
                  target=str(organization.id), reply_to_set=bool(reply_to))
            db.session.commit()
            flash("Saved. Emails queued from now on use these.", "success")
            return redirect(url_for(".emails"))
    return render_template("hub/email_settings.html", organization=organization, error=error,
                           form=request.form if error else None), 400 if error else 200


@bp.route("/settings/integrations/<plugin_key>/activity")
@login_required
def activity(plugin_key):
    """An integration's activity log, for one that has no page of its own to show it on."""
    from . import activity as activity_log
    from .registry import get_plugin

    try:
        plugin = get_plugin(plugin_key)
    except KeyError:
        abort(404)
    return render_template("hub/activity.html", plugin=plugin,
                           activity=activity_log.page(g.user.organization_id, plugin, request.args))


@bp.route("/settings/integrations")
@login_required
def index():
    from .security import CSP

    response = make_response(render_template("hub/integrations.html",
                                              cards=integration_cards(g.user.organization_id)))
    # Connect posts here and is redirected to the provider's consent page; browsers check that
    # redirect against this page's form-action, so the providers' origins must be listed.
    targets = current_app.config.get("HUB_CSP_FORM_TARGETS", []) + authorize_origins(current_app.config)
    response.headers["Content-Security-Policy"] = CSP.format(form_targets=" ".join(targets))
    return response
