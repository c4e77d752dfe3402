"""Human UI of the sandbox: accounts, pipelines with move buttons, notes, tags, apps, webhooks."""
from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import Markup, escape

from . import oauth
from .state import NotFound, SandboxState
from .webhooks import ARCHIVE_CHANGE, STAGE_CHANGE, delivery_json, move_and_notify, notify_archive_change

bp = Blueprint("lever_sandbox_ui", __name__)

_URL = re.compile(r"https?://[^\s<>\"']+")


@bp.app_template_filter("lever_time")
def lever_time(value) -> str:
    """Lever's times are milliseconds since 1970; people read a date (UTC, as Lever's API is)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "" if value is None else str(value)
    seconds = value / 1000 if value > 10**11 else value
    return datetime.fromtimestamp(seconds, UTC).strftime("%d %b %Y, %H:%M UTC")


@bp.app_template_filter("linkify")
def linkify(text: str) -> Markup:
    """A note's text with its links clickable, as Lever shows them (everything else escaped)."""
    out, last = [], 0
    for match in _URL.finditer(text or ""):
        out += [escape(text[last:match.start()]),
                Markup('<a href="{0}" rel="noopener" target="_blank">{0}</a>').format(match.group(0))]
        last = match.end()
    out.append(escape((text or "")[last:]))
    return Markup("").join(out)

# Enough to click through; a benchmark-sized pipeline would make the page useless anyway.
CARDS_PER_STAGE = 100


#: The account's webhook toggles, as Lever's settings page names them.
TOGGLES = ((STAGE_CHANGE, "Candidate Stage Change"), (ARCHIVE_CHANGE, "Candidate Archive Change"))


def _state() -> SandboxState:
    return current_app.extensions["lever_sandbox"]


def _account(account_id: str):
    try:
        return _state().account(account_id)
    except NotFound:
        abort(404)


def _acting_user_id(account) -> str | None:
    """Changes made in the UI are attributed to the signed-in user, else the Super Admin."""
    user_id = session.get("user_id")
    if user_id in account.users:
        return user_id
    admin = account.super_admin()
    return admin.id if admin else None


def _back(default: str):
    target = request.form.get("next") or default
    return redirect(target if target.startswith("/") else default)


@bp.app_context_processor
def _signed_in():
    user_id = session.get("user_id")
    state = current_app.extensions["lever_sandbox"]
    with state.lock:
        for account in state.accounts.values():
            if user_id in account.users:
                return {"current_user": account.users[user_id], "current_account": account}
    return {"current_user": None, "current_account": None}


@bp.get("/")
def index():
    state = _state()
    with state.lock:
        return render_template("lever_sandbox/index.html", accounts=list(state.accounts.values()))


@bp.get("/accounts/<account_id>")
def account(account_id):
    with _state().lock:
        acc = _account(account_id)
        counts = {}
        for opp in acc.opportunities.values():
            if opp.application:
                counts[opp.application.posting_id] = counts.get(opp.application.posting_id, 0) + 1
        return render_template("lever_sandbox/account.html", account=acc, counts=counts)


@bp.get("/accounts/<account_id>/postings/<posting_id>")
def pipeline(account_id, posting_id):
    with _state().lock:
        acc = _account(account_id)
        posting = acc.postings.get(posting_id) or abort(404)
        columns = []
        for stage in acc.stages:
            opps = [o for o in acc.opportunities.values()
                    if o.stage == stage.id and o.application
                    and o.application.posting_id == posting_id]
            opps.sort(key=lambda o: (o.created_at, o.id))
            columns.append((stage, opps[:CARDS_PER_STAGE], max(0, len(opps) - CARDS_PER_STAGE)))
        applied = sum(1 for o in acc.opportunities.values() if o.application and o.application.posting_id == posting_id)
        suggestion = {"name": f"Applicant {applied + 1}", "email": f"applicant{applied + 1}@example.com"}
        return render_template("lever_sandbox/pipeline.html", account=acc, posting=posting,
                               columns=columns, first_stage=_applied_stage(acc), suggestion=suggestion)


def _applied_stage(acc):
    """Where a new application lands: Lever's "New applicant" stage, else the first stage."""
    return next((s for s in acc.stages if s.id == "applicant-new"), acc.stages[0])


@bp.post("/accounts/<account_id>/postings/<posting_id>/apply")
def apply(account_id, posting_id):
    """Someone applies to the posting now (no webhook: Lever sends none for an application to
    the integration's stage-change subscription)."""
    acc = _account(account_id)
    name = " ".join(request.form.get("name", "").split())[:200]
    email = request.form.get("email", "").strip()[:320]
    if not name or "@" not in email:
        flash("A new candidate needs a name and an email address.")
    else:
        try:
            _state().add_candidates(account_id, posting_id, _applied_stage(acc).id,
                                    candidates=[{"name": name, "emails": [email]}])
            flash(f"{name} applied. Move them to the linked stage to send the test.")
        except NotFound as exc:
            flash(str(exc))
    return redirect(url_for(".pipeline", account_id=account_id, posting_id=posting_id))


@bp.post("/accounts/<account_id>/move")
def move(account_id):
    acc = _account(account_id)
    ids = request.form.getlist("opportunity_ids")
    stage_id = request.form.get("stage_id", "")
    default = url_for(".account", account_id=account_id)
    if not ids:
        flash("Select at least one candidate to move.")
        return _back(default)
    try:
        moved = move_and_notify(_state(), current_app.config, account_id, ids, stage_id,
                                _acting_user_id(acc))
    except NotFound as exc:
        flash(str(exc))
        return _back(default)
    stage_name = acc.stage(stage_id).text
    flash(f"Moved {moved} candidate(s) to {stage_name}.")
    return _back(default)


@bp.get("/candidates/<opportunity_id>")
def candidate(opportunity_id):
    try:
        acc, _ = _state().find_opportunity(opportunity_id)
    except NotFound:
        abort(404)
    return redirect(url_for(".opportunity", account_id=acc.id, opportunity_id=opportunity_id))


@bp.get("/accounts/<account_id>/opportunities/<opportunity_id>")
def opportunity(account_id, opportunity_id):
    with _state().lock:
        acc = _account(account_id)
        opp = acc.opportunities.get(opportunity_id) or abort(404)
        posting = acc.postings.get(opp.application.posting_id) if opp.application else None
        notes = [n for n in acc.notes if n.opportunity_id == opportunity_id]
        files = [f for f in acc.files if f.opportunity_id == opportunity_id]
        stage_names = {s.id: s.text for s in acc.stages}
        return render_template("lever_sandbox/opportunity.html", account=acc, opp=opp,
                               posting=posting, notes=notes, files=files,
                               stage_names=stage_names)


@bp.post("/accounts/<account_id>/opportunities/<opportunity_id>/archive")
def archive(account_id, opportunity_id):
    _account(account_id)
    state = _state()
    changed = state.set_archived(account_id, opportunity_id, request.form.get("archived") == "yes")
    if changed is not None:
        notify_archive_change(state, current_app.config, account_id, *changed)
        flash("Candidate archived." if changed[0].archived else "Candidate unarchived.")
    return redirect(url_for(".opportunity", account_id=account_id, opportunity_id=opportunity_id))


@bp.post("/accounts/<account_id>/opportunities/<opportunity_id>/notes")
def add_note(account_id, opportunity_id):
    acc = _account(account_id)
    value = request.form.get("value", "").strip()
    if value:
        user_id = _acting_user_id(acc)
        _state().add_note(account_id, opportunity_id, value, user_id, None)
        flash("Note added.")
    return redirect(url_for(".opportunity", account_id=account_id, opportunity_id=opportunity_id))


@bp.post("/accounts/<account_id>/opportunities/<opportunity_id>/tags")
def change_tags(account_id, opportunity_id):
    _account(account_id)
    tag = request.form.get("tag", "").strip()
    if tag:
        _state().change_tags(account_id, opportunity_id, [tag],
                             add=request.form.get("action") != "remove")
    return redirect(url_for(".opportunity", account_id=account_id, opportunity_id=opportunity_id))


@bp.get("/accounts/<account_id>/authorized-apps")
def authorized_apps(account_id):
    state = _state()
    with state.lock:
        acc = _account(account_id)
        apps = [(a, state.clients.get(a.client_id), acc.users.get(a.granted_by))
                for a in acc.authorized_apps.values()]
        return render_template("lever_sandbox/authorized_apps.html", account=acc, apps=apps,
                               scope_words=oauth.SCOPES)


@bp.post("/accounts/<account_id>/authorized-apps/<client_id>/revoke")
def revoke_app(account_id, client_id):
    _account(account_id)
    oauth.revoke_app(_state(), account_id, client_id)
    flash(f"Access revoked for {client_id}.")
    return redirect(url_for(".authorized_apps", account_id=account_id))


@bp.get("/accounts/<account_id>/webhooks")
def webhooks(account_id):
    state = _state()
    with state.lock:
        acc = _account(account_id)
        hooks = list(acc.webhooks.values())
        deliveries = [delivery_json(d) for d in reversed(state.deliveries)
                      if d.account_id == account_id]
        return render_template("lever_sandbox/webhooks.html", account=acc, hooks=hooks,
                               deliveries=deliveries,
                               toggles=[(event, label, acc.webhook_toggles.get(event, False))
                                        for event, label in TOGGLES])


@bp.post("/accounts/<account_id>/webhook-toggle")
def set_toggle(account_id):
    state = _state()
    with state.lock:
        acc = _account(account_id)
        # Each toggle's form sends only its own field.
        for event, _ in TOGGLES:
            if event in request.form:
                acc.webhook_toggles[event] = request.form.get(event) == "on"
    return redirect(url_for(".webhooks", account_id=account_id))


@bp.get("/files/<file_id>")
def download_file(file_id):
    state = _state()
    with state.lock:
        for acc in state.accounts.values():
            for f in acc.files:
                if f.id == file_id:
                    return Response(f.data, mimetype=f.content_type, headers={
                        "Content-Disposition": f'attachment; filename="{f.name}"'})
    abort(404)
