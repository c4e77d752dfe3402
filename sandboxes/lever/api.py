"""Lever REST API v1 subset: postings, stages, users, opportunities, notes, files, webhooks."""
from __future__ import annotations

import functools
import os
import secrets
import time

from flask import Blueprint, current_app, g, jsonify, request

from . import shapes
from .limits import retry_after_header, take_token
from .state import Account, Invalid, NotFound, SandboxState, StoredFile, Webhook, new_id, now_ms
from .webhooks import move_and_notify

bp = Blueprint("lever_sandbox_api", __name__, url_prefix="/v1")

# Lever docs (/developer/documentation#webhooks): the events a webhook can subscribe to.
WEBHOOK_EVENTS = ("applicationCreated", "candidateHired", "candidateStageChange",
                  "candidateArchiveChange", "candidateDeleted", "interviewCreated",
                  "interviewUpdated", "interviewDeleted", "contactCreated", "contactUpdated")
MAX_FILE_BYTES = 30 * 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    # Lever docs (/developer/documentation#errors): errors are {"code", "message"}.
    return jsonify({"code": code, "message": message}), status, headers or {}


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return error_response(exc.status, exc.code, exc.message, exc.headers)


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound):
    return error_response(404, "ResourceNotFound", str(exc))


@bp.errorhandler(Invalid)
def _invalid(exc: Invalid):
    return error_response(400, "BadRequest", str(exc))


@bp.errorhandler(shapes.BadPage)
def _bad_page(exc: shapes.BadPage):
    return error_response(400, "BadRequest", str(exc))


def _state() -> SandboxState:
    return current_app.extensions["lever_sandbox"]


def _has_scope(granted: list[str], needed: str) -> bool:
    # Lever docs (/developer/oauth#scopes): a write scope includes its read scope.
    return needed in granted or needed.replace(":read:", ":write:") in granted


def requires(scope: str):
    """Authenticate the bearer token, apply the rate limit, then check `scope`."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            g.account = _authenticate(scope)
            return view(*args, **kwargs)
        return wrapper
    return decorator


def _authenticate(scope: str) -> Account:
    state, config = _state(), current_app.config
    header = request.headers.get("Authorization", "")
    raw = header[7:].strip() if header[:7].lower() == "bearer " else ""
    with state.lock:
        access = state.access_tokens.get(raw) if raw else None
    if access is None:
        raise ApiError(401, "Unauthorized", "Missing or invalid access token")
    g.log.update(account_id=access.account_id, client_id=access.client_id, token_id=access.id)
    if access.revoked:
        raise ApiError(401, "Unauthorized", "Access token has been revoked")
    if time.time() >= access.expires_at:
        raise ApiError(401, "Unauthorized", "Access token has expired")
    wait = take_token(state, access.id, float(config["SANDBOX_RATE_LIMIT"]),
                      int(config["SANDBOX_RATE_BURST"]))
    if wait is not None:
        # Lever docs (/developer/documentation#rate-limits): 429 when over the limit; whether
        # Retry-After is sent is unverified, so SANDBOX_RETRY_AFTER decides.
        headers = {"Retry-After": retry_after_header(wait)} if config["SANDBOX_RETRY_AFTER"] else {}
        raise ApiError(429, "TooManyRequests", "Rate limit exceeded", headers)
    if not _has_scope(access.scopes, scope):
        raise ApiError(403, "Forbidden", f"This token lacks the scope {scope}")
    return state.account(access.account_id)


def _base_url() -> str:
    return request.host_url.rstrip("/")


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "Request body must be a JSON object")
    return body


def _page(records, key, render):
    return jsonify(shapes.paginate(records, key, render, request.args.get("limit"),
                                   request.args.get("offset")))


def _by_created(record):
    return (record.created_at, record.id)


def _perform_as(account: Account, required: bool) -> str | None:
    """Check ?perform_as=<userId>: it must name a user of this account (active, by default)."""
    user_id = request.args.get("perform_as")
    g.log["perform_as"] = user_id
    if not user_id:
        if required:
            raise ApiError(400, "BadRequest", "perform_as is required for this request")
        return None
    user = account.users.get(user_id)
    if user is None:
        raise ApiError(400, "BadRequest", f"perform_as user {user_id} not found in this account")
    # lever-api.md: what Lever does for a deactivated perform_as user is unverified.
    if not user.active and current_app.config["SANDBOX_DEACTIVATED_PERFORM_AS"] == "reject":
        raise ApiError(400, "BadRequest", f"perform_as user {user_id} is deactivated")
    return user_id


# --- postings, stages, users ------------------------------------------------------------------

@bp.get("/postings")
@requires("postings:read:admin")
def list_postings():
    account, states = g.account, request.args.getlist("state")
    with _state().lock:
        postings = sorted((p for p in account.postings.values() if not states or p.state in states),
                          key=_by_created)
        return _page(postings, _by_created, lambda p: shapes.posting_json(p, _base_url(), account))


@bp.get("/postings/<posting_id>")
@requires("postings:read:admin")
def get_posting(posting_id):
    with _state().lock:
        return jsonify({"data": shapes.posting_json(g.account.posting(posting_id), _base_url(),
                                                    g.account)})


@bp.get("/stages")
@requires("stages:read:admin")
def list_stages():
    with _state().lock:
        stages = list(g.account.stages)
        order = {s.id: i for i, s in enumerate(stages)}
        return _page(stages, lambda s: (order[s.id],), shapes.stage_json)


@bp.get("/stages/<stage_id>")
@requires("stages:read:admin")
def get_stage(stage_id):
    with _state().lock:
        return jsonify({"data": shapes.stage_json(g.account.stage(stage_id))})


@bp.get("/users")
@requires("users:read:admin")
def list_users():
    # Lever docs (/developer/documentation#list-all-users): deactivated users are listed only
    # with includeDeactivated=true.
    include_deactivated = request.args.get("includeDeactivated", "").lower() == "true"
    with _state().lock:
        users = sorted((u for u in g.account.users.values() if u.active or include_deactivated),
                       key=_by_created)
        return _page(users, _by_created, shapes.user_json)


@bp.get("/users/<user_id>")
@requires("users:read:admin")
def get_user(user_id):
    with _state().lock:
        return jsonify({"data": shapes.user_json(g.account.user(user_id))})


# --- opportunities ----------------------------------------------------------------------------

def _expand() -> set[str]:
    return {part for value in request.args.getlist("expand") for part in value.split(",")}


def _opportunity_response(opp):
    return jsonify({"data": shapes.opportunity_json(opp, _base_url(), _expand())})


@bp.get("/opportunities")
@requires("opportunities:read:admin")
def list_opportunities():
    args = request.args
    posting_ids, stage_ids = set(args.getlist("posting_id")), set(args.getlist("stage_id"))
    emails = {e.lower() for e in args.getlist("email")}
    try:
        updated_start = int(args["updated_at_start"]) if "updated_at_start" in args else None
    except ValueError:
        raise ApiError(400, "BadRequest", "updated_at_start must be epoch milliseconds") from None

    def wanted(opp) -> bool:
        posting = opp.application.posting_id if opp.application else None
        return ((not posting_ids or posting in posting_ids)
                and (not stage_ids or opp.stage in stage_ids)
                and (not emails or emails & {e.lower() for e in opp.emails})
                and (updated_start is None or opp.updated_at >= updated_start))

    expand, base = _expand(), _base_url()
    with _state().lock:
        opps = sorted(filter(wanted, g.account.opportunities.values()), key=_by_created)
        return _page(opps, _by_created, lambda o: shapes.opportunity_json(o, base, expand))


@bp.get("/opportunities/<opportunity_id>")
@requires("opportunities:read:admin")
def get_opportunity(opportunity_id):
    with _state().lock:
        return _opportunity_response(g.account.opportunity(opportunity_id))


@bp.put("/opportunities/<opportunity_id>/stage")
@requires("opportunities:write:admin")
def change_stage(opportunity_id):
    account = g.account
    user_id = _perform_as(account, required=False)
    stage_id = _json_body().get("stage")
    if not isinstance(stage_id, str):
        raise ApiError(400, "BadRequest", "Body must name a stage: {\"stage\": \"<stageId>\"}")
    account.opportunity(opportunity_id)
    try:
        account.stage(stage_id)
    except NotFound as exc:
        raise Invalid(str(exc)) from None
    # lever-api.md: a stage change through the API fires candidateStageChange too.
    move_and_notify(_state(), current_app.config, account.id, [opportunity_id], stage_id, user_id)
    with _state().lock:
        return _opportunity_response(account.opportunity(opportunity_id))


def _tags_view(opportunity_id: str, add: bool):
    account = g.account
    _perform_as(account, required=False)
    tags = _json_body().get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ApiError(400, "BadRequest", "Body must be {\"tags\": [\"...\"]}")
    opp = _state().change_tags(account.id, opportunity_id, tags, add)
    with _state().lock:
        return _opportunity_response(opp)


@bp.post("/opportunities/<opportunity_id>/addTags")
@requires("opportunities:write:admin")
def add_tags(opportunity_id):
    return _tags_view(opportunity_id, add=True)


@bp.post("/opportunities/<opportunity_id>/removeTags")
@requires("opportunities:write:admin")
def remove_tags(opportunity_id):
    return _tags_view(opportunity_id, add=False)


# --- notes ------------------------------------------------------------------------------------

@bp.get("/opportunities/<opportunity_id>/notes")
@requires("notes:read:admin")
def list_notes(opportunity_id):
    with _state().lock:
        g.account.opportunity(opportunity_id)
        notes = [n for n in g.account.notes if n.opportunity_id == opportunity_id]
        return _page(notes, _by_created, shapes.note_json)


@bp.post("/opportunities/<opportunity_id>/notes")
@requires("notes:write:admin")
def create_note(opportunity_id):
    account = g.account
    account.opportunity(opportunity_id)
    user_id = _perform_as(account, current_app.config["SANDBOX_REQUIRE_PERFORM_AS_FOR_NOTES"])
    body = _json_body()
    value = body.get("value")
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "BadRequest", "value is required")
    score = body.get("score")
    if score is not None and score not in (1, 2, 3, 4):
        raise ApiError(400, "BadRequest", "score must be 1, 2, 3 or 4")
    created_at = body.get("createdAt")
    if created_at is not None and not isinstance(created_at, int):
        raise ApiError(400, "BadRequest", "createdAt must be epoch milliseconds")
    # Notes are stored as given: Lever shows HTML in a note literally.
    note = _state().add_note(account.id, opportunity_id, value, user_id, user_id,
                             bool(body.get("secret", False)), score, created_at)
    # Response shape unverified (lever-shapes/note.create.response.json).
    return jsonify({"data": {"noteId": note.id}})


# --- files ------------------------------------------------------------------------------------

@bp.post("/opportunities/<opportunity_id>/files")
@requires("files:write:admin")
def upload_file(opportunity_id):
    account = g.account
    account.opportunity(opportunity_id)
    _perform_as(account, required=False)
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "BadRequest", "multipart field 'file' is required")
    data = upload.read(MAX_FILE_BYTES + 1)
    # Lever docs (/developer/documentation#upload-a-single-file): files up to 30 MB.
    if len(data) > MAX_FILE_BYTES:
        raise ApiError(413, "RequestEntityTooLarge", "Files are limited to 30 MB")
    name = upload.filename or "upload"
    stored = StoredFile(id=new_id(), opportunity_id=opportunity_id, name=name,
                        ext=os.path.splitext(name)[1].lstrip(".").lower(), size=len(data),
                        content_type=upload.mimetype or "application/octet-stream", data=data,
                        uploaded_at=now_ms())
    with _state().lock:
        account.files.append(stored)
        return jsonify({"data": shapes.file_json(stored, _base_url())})


@bp.get("/opportunities/<opportunity_id>/files")
@requires("files:read:admin")
def list_files(opportunity_id):
    with _state().lock:
        g.account.opportunity(opportunity_id)
        files = [f for f in g.account.files if f.opportunity_id == opportunity_id]
        return _page(files, lambda f: (f.uploaded_at, f.id),
                     lambda f: shapes.file_json(f, _base_url()))


# --- webhooks ---------------------------------------------------------------------------------

def _webhook_fields(body: dict, partial: bool) -> dict:
    fields = {}
    if "event" in body or not partial:
        if body.get("event") not in WEBHOOK_EVENTS:
            raise ApiError(400, "BadRequest", f"event must be one of {', '.join(WEBHOOK_EVENTS)}")
        fields["event"] = body["event"]
    if "url" in body or not partial:
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ApiError(400, "BadRequest", "url must be an http(s) URL")
        # Lever docs: webhook URLs must be HTTPS; the sandbox only insists when configured to.
        if current_app.config["SANDBOX_WEBHOOK_REQUIRE_HTTPS"] and not url.startswith("https://"):
            raise ApiError(400, "BadRequest", "url must use HTTPS")
        fields["url"] = url
    if "configuration" in body:
        conditions = (body.get("configuration") or {}).get("conditions")
        if conditions is not None:
            origins = conditions.get("origins") if isinstance(conditions, dict) else None
            if not isinstance(origins, list):
                raise ApiError(400, "BadRequest", "configuration.conditions.origins must be a list")
        fields["conditions"] = conditions
    return fields


@bp.get("/webhooks")
@requires("webhooks:read:admin")
def list_webhooks():
    with _state().lock:
        hooks = sorted(g.account.webhooks.values(), key=_by_created)
        return _page(hooks, _by_created, lambda h: shapes.webhook_json(h, with_token=False))


@bp.post("/webhooks")
@requires("webhooks:write:admin")
def create_webhook():
    fields = _webhook_fields(_json_body(), partial=False)
    at = now_ms()
    hook = Webhook(id=new_id(), event=fields["event"], url=fields["url"],
                   signature_token=secrets.token_hex(16), conditions=fields.get("conditions"),
                   created_at=at, updated_at=at, client_id=g.log.get("client_id"))
    with _state().lock:
        g.account.webhooks[hook.id] = hook
        # Lever docs: 201, and the signature token is only shown now.
        return jsonify({"data": shapes.webhook_json(hook, with_token=True)}), 201


def _webhook(webhook_id: str) -> Webhook:
    hook = g.account.webhooks.get(webhook_id)
    if hook is None:
        raise NotFound(f"Webhook {webhook_id} not found")
    return hook


@bp.put("/webhooks/<webhook_id>")
@requires("webhooks:write:admin")
def update_webhook(webhook_id):
    fields = _webhook_fields(_json_body(), partial=True)
    with _state().lock:
        hook = _webhook(webhook_id)
        for name, value in fields.items():
            setattr(hook, name, value)
        hook.updated_at = now_ms()
        return jsonify({"data": shapes.webhook_json(hook, with_token=False)})


@bp.delete("/webhooks/<webhook_id>")
@requires("webhooks:write:admin")
def delete_webhook(webhook_id):
    with _state().lock:
        _webhook(webhook_id)
        del g.account.webhooks[webhook_id]
    return "", 204
