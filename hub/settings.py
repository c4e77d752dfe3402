"""Settings > Integrations: one card per registered plugin with its connection status."""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, current_app, flash, g, make_response, redirect, render_template, request, url_for

from .auth import OPERATOR_HOME, admin_required, login_required
from .connections import authorize_origins, renewal_due
from .extensions import db
from .models import Connection, utcnow
from .registry import all_plugins

bp = Blueprint("settings", __name__)


def integration_cards(org_id: int) -> list[dict]:
    """What the page and the API show: each plugin with its (first provider's) connection."""
    connections = {(c.plugin_key, c.provider): c for c in db.session.scalars(
        db.select(Connection).filter_by(organization_id=org_id))}
    cards = []
    for plugin in all_plugins().values():
        provider = plugin.providers[0] if plugin.providers else None
        conn = connections.get((plugin.key, provider.name)) if provider else None
        status = conn.status if conn else Connection.NOT_CONNECTED
        index = f"{plugin.key}.index"
        page = url_for(index) if index in current_app.view_functions else None
        renew_by = renewal_due(provider, conn, status)
        cards.append({"plugin": plugin, "provider": provider, "connection": conn,
                      "status": status, "page": page, "steps": setup_steps(plugin, provider, conn, status),
                      "alerts": card_alerts(plugin, conn), "hints": card_hints(plugin, conn, status),
                      "renew_by": renew_by,
                      "renew_soon": renew_by is not None and renew_by - utcnow() <= RENEWAL_WARNING})
    return cards


#: How long before the authorization lapses the card warns that it must be renewed.
RENEWAL_WARNING = timedelta(days=30)


def setup_steps(plugin, provider, conn, status: str) -> list:
    """The card's checklist: connected (the hub's step), then the plugin's own steps."""
    from .plugin import SetupStep

    if provider is None or status == Connection.REVOKED:
        return []  # a revoked card shows why and Reconnect instead
    active = status == Connection.ACTIVE
    hints = {Connection.NOT_CONNECTED: f"Click Connect; {provider.consent_by or 'an admin'} accepts in {provider.title}.",
             Connection.SETTING_UP: f"Finishing the setup in {provider.title}…"}
    steps = [SetupStep(f"Connected to {provider.title}", active, hints.get(status, ""))]
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


def card_alerts(plugin, conn) -> list:
    """What the card warns of for a usable connection (nothing otherwise: the status says it
    all): work for it that failed for good, then the plugin's own alerts."""
    if conn is None or not conn.usable:
        return []
    provider = plugin.providers[0] if plugin.providers else None
    alerts = failed_work_alerts(conn, provider.title if provider else plugin.title)
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


def card_json(card: dict) -> dict:
    conn = card["connection"]
    connected = conn is not None and card["status"] != Connection.NOT_CONNECTED
    return {
        "key": card["plugin"].key,
        "title": card["plugin"].title,
        "description": card["plugin"].description,
        "status": card["status"],
        "account": conn.external_account_name if connected else None,
        "connected_by": conn.connected_by.email if connected and conn.connected_by else None,
        "connected_at": conn.connected_at.isoformat() + "Z" if connected and conn.connected_at else None,
        "revoked_reason": conn.revoked_reason if connected else None,
        "setup_error": conn.setup_error if connected else None,
        "last_refresh_error": conn.last_refresh_error if connected else None,
        "hints": list(card.get("hints", [])) if connected else [],
        "steps": [{"label": st.label, "done": st.done, "hint": st.hint} for st in card["steps"]],
        "alerts": [{"level": a.level, "message": a.message, "next_step": a.next_step, "link": a.link}
                   for a in card["alerts"]],
        "renew_by": card["renew_by"].isoformat() + "Z" if card["renew_by"] else None,
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
