"""Admin JSON API under /_sandbox (no auth): reset, clients, config, data, faults, logs."""
from __future__ import annotations

import copy
import re

from flask import Blueprint, current_app, jsonify, request

from . import limits, oauth
from .app import RUNTIME_KEYS, add_client
from .shapes import webhook_json
from .state import (
    AuthorizedApp,
    Invalid,
    NotFound,
    SandboxState,
    add_account,
    generate_accounts,
    generate_candidates,
    now_ms,
    read_seed,
)
from .webhooks import delivery_json, move_and_notify, notify_archive_change

bp = Blueprint("lever_sandbox_admin", __name__, url_prefix="/_sandbox")


class AdminError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@bp.errorhandler(AdminError)
def _admin_error(exc: AdminError):
    return jsonify({"code": "BadRequest" if exc.status == 400 else "NotFound",
                    "message": exc.message}), exc.status


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound):
    return jsonify({"code": "NotFound", "message": str(exc)}), 404


@bp.errorhandler(Invalid)
def _invalid(exc: Invalid):
    return jsonify({"code": "BadRequest", "message": str(exc)}), 400


def _state() -> SandboxState:
    return current_app.extensions["lever_sandbox"]


def _body() -> dict:
    body = request.get_json(silent=True)
    if body is None and not request.data:
        return {}
    if not isinstance(body, dict):
        raise AdminError(400, "Body must be a JSON object")
    return body


def _require(body: dict, *names: str) -> None:
    missing = [n for n in names if n not in body]
    if missing:
        raise AdminError(400, f"Missing field(s): {', '.join(missing)}")


@bp.post("/reset")
def reset():
    """seed: "default" = shipped, null = empty, a path or a seed object; absent = configured."""
    body = _body()
    seed = body["seed"] if "seed" in body else current_app.config["SANDBOX_SEED"]
    try:
        data = read_seed(seed)
    except (OSError, ValueError) as exc:
        raise AdminError(400, f"Cannot read seed: {exc}") from None
    state = _state()
    current_app.config.update(copy.deepcopy(state.initial_config))
    state.reset(data)
    return jsonify({"data": {"accounts": sorted(state.accounts)}})


@bp.post("/clients")
def register_client():
    body = _body()
    _require(body, "client_id", "client_secret", "redirect_uris")
    client = add_client(_state(), body)
    return jsonify({"data": {"client_id": client.client_id, "name": client.name,
                             "redirect_uris": client.redirect_uris}})


@bp.get("/config")
def read_config():
    return jsonify({"data": {key: current_app.config[key] for key in sorted(RUNTIME_KEYS)}})


@bp.patch("/config")
def update_config():
    body = _body()
    unknown = sorted(set(body) - RUNTIME_KEYS)
    if unknown:
        raise AdminError(400, f"Not settable at run time: {', '.join(unknown)}")
    current_app.config.update(body)
    return read_config()


@bp.post("/accounts")
def create_accounts():
    """Add accounts without a reset: generated ones (``count``) or seed entries (``accounts``)."""
    body = _body()
    state = _state()
    if "accounts" in body:
        specs = body["accounts"]
        if not isinstance(specs, list) or not all(isinstance(s, dict) and "id" in s for s in specs):
            raise AdminError(400, "accounts must be a list of seed entries with an id")
        try:
            with state.lock:
                ids = [add_account(state, spec).id for spec in specs]
        except (KeyError, TypeError) as exc:
            raise AdminError(400, f"Bad account entry: missing or wrong field {exc}") from None
    elif "count" in body:
        try:
            count, candidates = int(body["count"]), int(body.get("candidates", 0))
        except (TypeError, ValueError):
            raise AdminError(400, "count and candidates must be integers") from None
        ids = generate_accounts(state, count, str(body.get("prefix", "org")),
                                candidates=candidates, seed=body.get("seed"))
    else:
        raise AdminError(400, "Give either count or accounts")
    return jsonify({"data": {"accounts": ids}})


@bp.get("/accounts/<account_id>/state")
def account_state(account_id):
    state = _state()
    with state.lock:
        account = state.account(account_id)
        return jsonify({"data": {
            "id": account.id, "name": account.name,
            "webhook_toggles": dict(account.webhook_toggles),
            "users": [u.id for u in account.users.values()],
            "active_users": [u.id for u in account.users.values() if u.active],
            "stages": [s.id for s in account.stages],
            "postings": {p.id: p.state for p in account.postings.values()},
            "opportunities": {o.id: o.stage for o in account.opportunities.values()},
            "authorized_apps": sorted(account.authorized_apps),
            "webhooks": sorted(account.webhooks),
        }})


@bp.post("/accounts/<account_id>/candidates")
def add_candidates(account_id):
    body = _body()
    _require(body, "posting_id", "stage_id")
    state = _state()
    if "candidates" in body:
        ids = state.add_candidates(account_id, body["posting_id"], body["stage_id"],
                                   body["candidates"])
    elif "count" in body:
        ids = generate_candidates(state, account_id, int(body["count"]), body["posting_id"],
                                  body["stage_id"], body.get("seed"))
    else:
        raise AdminError(400, "Give either count or candidates")
    return jsonify({"data": ids})


@bp.post("/accounts/<account_id>/move")
def move(account_id):
    body = _body()
    _require(body, "opportunity_ids", "stage_id")
    state = _state()
    user_id = body.get("user_id")
    if user_id is None:
        with state.lock:
            admin = state.account(account_id).super_admin()
            user_id = admin.id if admin else None
    moved = move_and_notify(state, current_app.config, account_id, list(body["opportunity_ids"]),
                            body["stage_id"], user_id)
    return jsonify({"data": {"moved": moved}})


@bp.patch("/opportunities/<opportunity_id>")
def patch_opportunity(opportunity_id):
    body = _body()
    state = _state()
    if "archived" in body:
        # An archive or unarchive fires candidateArchiveChange, as in Lever.
        account, _ = state.find_opportunity(opportunity_id)
        changed = state.set_archived(account.id, opportunity_id, body["archived"])
        if changed is not None:
            notify_archive_change(state, current_app.config, account.id, *changed)
    with state.lock:
        account, opp = state.find_opportunity(opportunity_id)
        if "posting_id" in body:
            # The candidate leaves the posting (null) or their application moves to another one.
            if body["posting_id"] is None:
                opp.application = None
            elif opp.application is not None:
                opp.application.posting_id = account.posting(body["posting_id"]).id
        if "emails" in body:
            opp.emails = list(body["emails"])
        for field in ("name", "origin", "owner"):
            if field in body:
                setattr(opp, field, body[field])
        opp.updated_at = now_ms()
        return jsonify({"data": {"id": opp.id}})


@bp.put("/accounts/<account_id>/webhook-toggles")
def set_toggles(account_id):
    body = _body()
    state = _state()
    with state.lock:
        account = state.account(account_id)
        for event, on in body.items():
            account.webhook_toggles[event] = bool(on)
        return jsonify({"data": dict(account.webhook_toggles)})


@bp.post("/accounts/<account_id>/authorized-apps/<client_id>/revoke")
def revoke(account_id, client_id):
    removed = oauth.revoke_app(_state(), account_id, client_id)
    return jsonify({"data": {"revoked": removed}})


@bp.post("/accounts/<account_id>/tokens")
def mint_tokens(account_id):
    """Skip the browser: grant `scope` to `client_id` as the account's Super Admin would."""
    body = _body()
    _require(body, "client_id")
    state = _state()
    if body["client_id"] not in state.clients:
        raise AdminError(400, f"Unknown client {body['client_id']}")
    scopes = oauth.granted_scopes(body.get("scope", " ".join(oauth.SCOPES)), audience_given=True)
    with state.lock:
        account = state.account(account_id)
        admin = account.super_admin()
        account.authorized_apps[body["client_id"]] = AuthorizedApp(
            client_id=body["client_id"], scopes=scopes, granted_by=admin.id if admin else "",
            granted_at=now_ms())
    return jsonify(oauth.issue_tokens(state, account_id, body["client_id"], scopes))


@bp.post("/faults")
def add_fault():
    try:
        fault = limits.add_fault(_state(), _body())
    except (re.error, ValueError, TypeError) as exc:
        raise AdminError(400, f"Bad fault: {exc}") from None
    return jsonify({"data": {"id": fault.id}})


@bp.delete("/faults")
def clear_faults():
    state = _state()
    with state.lock:
        cleared = len(state.faults)
        state.faults.clear()
    return jsonify({"data": {"cleared": cleared}})


@bp.get("/requests")
def request_log():
    since = request.args.get("since", default=0, type=int)
    state = _state()
    with state.lock:
        return jsonify({"data": [dict(r) for r in state.requests if r["seq"] > since]})


@bp.get("/deliveries")
def deliveries():
    state = _state()
    webhook_id = request.args.get("webhook_id")
    with state.lock:
        return jsonify({"data": [delivery_json(d) for d in state.deliveries
                                 if webhook_id in (None, d.webhook_id)]})


@bp.get("/accounts/<account_id>/notes")
def notes(account_id):
    state = _state()
    with state.lock:
        account = state.account(account_id)
        return jsonify({"data": [
            {"id": n.id, "opportunity_id": n.opportunity_id, "value": n.value,
             "user": n.user_id, "perform_as": n.perform_as, "secret": n.secret,
             "score": n.score, "createdAt": n.created_at}
            for n in account.notes]})


@bp.get("/accounts/<account_id>/webhooks")
def webhooks(account_id):
    state = _state()
    with state.lock:
        account = state.account(account_id)
        return jsonify({"data": [dict(webhook_json(h, with_token=True), client_id=h.client_id)
                                 for h in account.webhooks.values()]})
