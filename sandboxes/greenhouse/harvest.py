"""Harvest v3 in the sandbox (docs/providers/greenhouse.md#harvest): a partner's OAuth consent and
token endpoint, and the reads and writes WeCP makes, with Greenhouse's rate-limit headers.

- ``/oauth/authorize`` shows a Site Admin's consent page; ``/oauth/token`` takes the partner's
  client by HTTP Basic, codes live a minute, access tokens an hour, refresh tokens a day and are
  replaced on every refresh.
- ``/v3/…``: jobs, job stages, an application, its move, notes; lists by cursor (``Link``
  ``rel="next"``, the cursor then the only query parameter); every answer says
  ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` for a 10-second window, and over it 429 with
  ``Retry-After``. Faults on the route ``harvest`` (status, 429, timeouts) come first.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
import time
from urllib.parse import urlencode

from flask import Blueprint, current_app, jsonify, redirect, render_template, request

from .state import Note, World, now

bp = Blueprint("greenhouse_harvest", __name__)

CODE_SECONDS, ACCESS_SECONDS, REFRESH_SECONDS = 60, 3600, 24 * 3600
WINDOW_SECONDS = 10


def _world() -> World:
    return current_app.extensions["greenhouse_sandbox"]


def _client() -> tuple[str, str]:
    return current_app.config["SANDBOX_HARVEST_CLIENT_ID"], current_app.config["SANDBOX_HARVEST_CLIENT_SECRET"]


# --- OAuth ------------------------------------------------------------------------------------

@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize():
    """A Site Admin accepts (or denies) WeCP's access, then goes back to WeCP with a code."""
    args = request.values
    client_id, _ = _client()
    allowed = current_app.config.get("SANDBOX_HARVEST_REDIRECT_URIS")
    redirect_uri = args.get("redirect_uri", "")
    if args.get("client_id") != client_id or not redirect_uri or (allowed and redirect_uri not in allowed):
        return "Unknown client or redirect URI.", 400
    if args.get("response_type", "code") != "code":
        return "Only the authorization code flow is offered to partners.", 400
    if request.method == "GET":
        return render_template("greenhouse/authorize.html", args=args)
    state = {"state": args["state"]} if args.get("state") else {}
    if args.get("decision") != "accept":
        return redirect(f"{redirect_uri}?{urlencode({'error': 'access_denied', **state})}")
    code = secrets.token_urlsafe(24)
    world = _world()
    with world.lock:
        world.harvest.codes[code] = (time.time() + CODE_SECONDS, redirect_uri)
    return redirect(f"{redirect_uri}?{urlencode({'code': code, **state})}")


def _token_error(status: int, error: str):
    return jsonify({"error": error}), status


def _basic_client() -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    client_id, secret = _client()
    return hmac.compare_digest(user, client_id) and hmac.compare_digest(password, secret)


@bp.post("/oauth/token")
def token():
    # docs/providers/greenhouse.md#harvest-auth: the client authenticates with HTTP Basic.
    if not _basic_client():
        return _token_error(401, "invalid_client")
    world, form, moment = _world(), request.form, time.time()
    with world.lock:
        harvest = world.harvest
        if form.get("grant_type") == "authorization_code":
            found = harvest.codes.pop(form.get("code", ""), None)
            if found is None or found[0] < moment or found[1] != form.get("redirect_uri", found[1]):
                return _token_error(400, "invalid_grant")
        elif form.get("grant_type") == "refresh_token":
            expires = harvest.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if expires is None or expires < moment:
                return _token_error(400, "invalid_grant")
        else:
            return _token_error(400, "unsupported_grant_type")
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        harvest.access_tokens[access] = moment + ACCESS_SECONDS
        harvest.refresh_tokens[refresh] = moment + REFRESH_SECONDS
        harvest.token_calls += 1
    return jsonify({"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                    "expires_in": ACCESS_SECONDS})


# --- the API: auth, rate limit, faults, pagination ----------------------------------------------

def injected(fault):
    """A fault's answer (an error status, with ``Retry-After`` when set), or None to serve the
    request: none was set, or it was a timeout, whose wait is over when this returns."""
    if fault is None:
        return None
    if fault.timeout:
        time.sleep(fault.seconds)
        return None
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
    return jsonify({"message": "injected fault"}), fault.status or 500, headers


@bp.before_request
def guard():
    if not request.path.startswith("/v3/"):
        return None
    world = _world()
    fault = world.fault_for("harvest")
    world.record(direction="from partner", call=f"{request.method} {request.path}", fault=fault.id if fault else None)
    answer = injected(fault)
    if answer is not None:
        return answer
    given = request.headers.get("Authorization", "")
    with world.lock:
        expires = world.harvest.access_tokens.get(given[7:]) if given.startswith("Bearer ") else None
        if expires is None or expires < time.time():
            return jsonify({"message": "Unauthorized"}), 401
        harvest, moment = world.harvest, time.time()
        if moment >= harvest.window_start + WINDOW_SECONDS:
            harvest.window_start, harvest.window_calls = moment, 0
        harvest.window_calls += 1
        reset = harvest.window_start + WINDOW_SECONDS
        remaining = harvest.rate_limit - harvest.window_calls
    headers = {"X-RateLimit-Limit": str(harvest.rate_limit), "X-RateLimit-Remaining": str(max(remaining, 0)),
               "X-RateLimit-Reset": str(math.ceil(reset))}
    if remaining < 0:
        return jsonify({"message": "Too Many Requests"}), 429, {**headers, "Retry-After": str(math.ceil(reset - moment))}
    request.environ["sandbox.rate_headers"] = headers
    return None


@bp.after_request
def rate_headers(response):
    response.headers.update(request.environ.get("sandbox.rate_headers") or {})
    return response


def _listed(items: list[dict]):
    """One page of ``items``; ``cursor`` must come alone (docs/providers/greenhouse.md#harvest-pagination)."""
    args = request.args
    if "cursor" in args and len(args) > 1:
        return jsonify({"message": "cursor must be the only query parameter"}), 400
    try:
        start = int(args.get("cursor", "0").split(":")[0])
        per_page = int(args.get("cursor", "0:100").split(":")[1]) if "cursor" in args else \
            min(max(int(args.get("per_page", 100)), 1), 500)
    except (ValueError, IndexError):
        return jsonify({"message": "bad cursor or per_page"}), 400
    page = items[start:start + per_page]
    response = jsonify(page)
    if start + per_page < len(items):
        response.headers["Link"] = f'<{request.base_url}?cursor={start + per_page}:{per_page}>; rel="next"'
    return response


@bp.get("/v3/jobs")
def jobs():
    world = _world()
    with world.lock:
        items = [{"id": j.id, "name": j.name, "status": "open"} for j in world.jobs.values()]
    if request.args.get("status", "open") != "open" and "cursor" not in request.args:
        items = []
    return _listed(items)


@bp.get("/v3/job_stages")
def job_stages():
    world = _world()
    with world.lock:
        items = [{"id": s.id, "name": s.name, "job_id": j.id, "priority": i, "active": True}
                 for j in world.jobs.values() for i, s in enumerate(j.stages)]
    return _listed(items)


def _application_json(world: World, application) -> dict:
    job = world.jobs[application.job_id]
    stage = world.stage(job, application.stage_id)
    return {"id": application.id, "candidate_id": application.candidate_id, "status": application.status,
            "current_stage": {"id": stage.id, "name": stage.name} if stage else None,
            "jobs": [{"id": job.id, "name": job.name}]}


@bp.get("/v3/applications/<int:application_id>")
def application(application_id):
    world = _world()
    with world.lock:
        found = world.applications.get(application_id)
        if found is None:
            return jsonify({"message": "Resource not found"}), 404
        return jsonify(_application_json(world, found))


def _invalid(field: str, message: str):
    return jsonify({"message": "Validation error", "errors": [{"field": field, "message": message}]}), 422


@bp.post("/v3/applications/<int:application_id>/move")
def move(application_id):
    """docs/providers/greenhouse.md#harvest-move: only active applications, within their job, and
    only from the stage they are in."""
    body = request.get_json(silent=True) or {}
    world = _world()
    with world.lock:
        found = world.applications.get(application_id)
        if found is None:
            return jsonify({"message": "Resource not found"}), 404
        if found.status != "active":
            return _invalid("application_id", "only active applications can be moved")
        if body.get("from_stage_id") != found.stage_id:
            return _invalid("from_stage_id", "the application is not in this stage")
        target = world.stage(world.jobs[found.job_id], body.get("to_stage_id") or 0)
        if target is None:
            return _invalid("to_stage_id", "not a stage of this application's job")
        found.stage_id = target.id
        world.harvest.moves.append({"application_id": found.id, "to": target.name, "at": now()})
    return "", 204


@bp.route("/v3/notes", methods=["GET", "POST"])
def notes():
    world = _world()
    if request.method == "GET":
        wanted = {int(x) for x in request.args.get("candidate_ids", "").split(",") if x.isdigit()}
        with world.lock:
            items = [vars(n) for n in world.harvest.notes if not wanted or n.candidate_id in wanted]
        return _listed(items)
    body = request.get_json(silent=True) or {}
    if body.get("visibility") not in ("admin_only", "private", "public"):
        return _invalid("visibility", "must be admin_only, private or public")
    if not isinstance(body.get("body"), str) or not body["body"].strip():
        return _invalid("body", "can't be blank")
    with world.lock:
        if body.get("candidate_id") not in world.candidates:
            return jsonify({"message": "Resource not found"}), 404
        note = Note(world.next_id(), body["candidate_id"], body["body"], body["visibility"])
        world.harvest.notes.append(note)
    return jsonify(vars(note)), 201


# --- the admin API ------------------------------------------------------------------------------

@bp.post("/_sandbox/harvest/revoke")
def admin_revoke():
    """A Site Admin removes WeCP's Harvest access: every token stops working."""
    world = _world()
    with world.lock:
        world.harvest.access_tokens.clear()
        world.harvest.refresh_tokens.clear()
    return jsonify({"data": {"revoked": True}})


@bp.put("/_sandbox/harvest/rate_limit")
def admin_rate_limit():
    world = _world()
    with world.lock:
        world.harvest.rate_limit = int(request.get_json(force=True)["limit"])
        world.harvest.window_start, world.harvest.window_calls = 0.0, 0  # a new window starts now
    return jsonify({"data": {"limit": world.harvest.rate_limit}})


@bp.get("/_sandbox/harvest")
def admin_harvest():
    world = _world()
    with world.lock:
        return jsonify({"data": {"notes": [vars(n) for n in world.harvest.notes], "moves": list(world.harvest.moves),
                                 "token_calls": world.harvest.token_calls,
                                 "live_access_tokens": len(world.harvest.access_tokens)}})
