"""Application factory of the Lever sandbox: config, state, blueprints, faults, request log."""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path

from flask import Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import persist
from .limits import request_fault, retry_after_header
from .state import DEFAULT_SEED_PATH, Client, SandboxState, now_ms, read_seed
from .webhooks import STAGE_CHANGE

DEFAULT_CLIENT = {
    "client_id": "wecp-hub-demo",
    "client_secret": "sandbox-secret",
    "name": "WeCP",
    "redirect_uris": [
        "http://127.0.0.1:5000/integrations/wecp_lever/connect/callback",
        "http://localhost:5000/integrations/wecp_lever/connect/callback",
    ],
}

DEFAULT_CONFIG = {
    "SANDBOX_SEED": str(DEFAULT_SEED_PATH),
    "SANDBOX_CLIENTS": [DEFAULT_CLIENT],
    "SANDBOX_ACCESS_TOKEN_TTL": 3600,
    "SANDBOX_RATE_LIMIT": 10.0,
    "SANDBOX_RATE_BURST": 20,
    "SANDBOX_RETRY_AFTER": True,
    "SANDBOX_WEBHOOK_RETRY_DELAYS": [5, 30, 120, 600],
    "SANDBOX_INVALID_GRANT_STATUS": 403,
    "SANDBOX_REFRESH_REUSE_GRACE_SECONDS": 0,
    "SANDBOX_REFRESH_REUSE_REVOKES_FAMILY": False,
    "SANDBOX_AUDIENCE": None,
    "SANDBOX_REQUIRE_PERFORM_AS_FOR_NOTES": True,
    "SANDBOX_DEACTIVATED_PERFORM_AS": "reject",
    "SANDBOX_WEBHOOK_REQUIRE_HTTPS": False,
    # A JSON file the state is kept in across restarts (the demo's); None keeps it in memory only.
    "SANDBOX_STATE_FILE": None,
    # Seeded accounts start with "Candidate Stage Change" off, as a new Lever account does.
    "SANDBOX_STAGE_CHANGE_OFF": False,
}

# Keys the admin API may change at run time (PATCH /_sandbox/config).
RUNTIME_KEYS = {
    "SANDBOX_ACCESS_TOKEN_TTL", "SANDBOX_RATE_LIMIT", "SANDBOX_RATE_BURST", "SANDBOX_RETRY_AFTER",
    "SANDBOX_WEBHOOK_RETRY_DELAYS", "SANDBOX_INVALID_GRANT_STATUS",
    "SANDBOX_REFRESH_REUSE_GRACE_SECONDS", "SANDBOX_REFRESH_REUSE_REVOKES_FAMILY",
    "SANDBOX_REQUIRE_PERFORM_AS_FOR_NOTES", "SANDBOX_DEACTIVATED_PERFORM_AS",
    "SANDBOX_WEBHOOK_REQUIRE_HTTPS", "SANDBOX_AUDIENCE",
}

# Paths whose calls go to the request log that tests read.
LOGGED_PREFIXES = ("/v1/", "/oauth/token")
# The admin API and static files are never slowed or broken by injected faults.
FAULT_FREE_PREFIXES = ("/_sandbox", "/static/")


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(copy.deepcopy(DEFAULT_CONFIG))
    app.config.update(
        SECRET_KEY=os.urandom(24),
        # A cookie name of its own: the hub on another port of the same host must not share it.
        SESSION_COOKIE_NAME="lever_sandbox_session",
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=40 * 1024 * 1024,
    )
    app.json.sort_keys = False
    app.config.update(config or {})

    state = SandboxState()
    state.initial_config = {key: copy.deepcopy(app.config[key]) for key in RUNTIME_KEYS}
    app.extensions["lever_sandbox"] = state
    register_configured_clients(app)
    state.reset(read_seed(app.config["SANDBOX_SEED"]))
    state_file = app.config["SANDBOX_STATE_FILE"]
    if not (state_file and persist.load(state, Path(state_file))) and app.config["SANDBOX_STAGE_CHANGE_OFF"]:
        for account in state.accounts.values():
            account.webhook_toggles[STAGE_CHANGE] = False

    from . import admin, api, oauth, ui
    for module in (oauth, api, admin, ui):
        app.register_blueprint(module.bp)

    app.before_request(_start_request)
    app.after_request(_log_request)
    if state_file:
        app.after_request(_keep_state)
    app.register_error_handler(HTTPException, _http_error)
    return app


def register_configured_clients(app: Flask) -> None:
    state = app.extensions["lever_sandbox"]
    with state.lock:
        for spec in app.config["SANDBOX_CLIENTS"]:
            add_client(state, spec)


def add_client(state: SandboxState, spec: dict) -> Client:
    client = Client(client_id=spec["client_id"], client_secret=spec["client_secret"],
                    name=spec.get("name") or spec["client_id"],
                    redirect_uris=list(spec.get("redirect_uris") or []))
    with state.lock:
        state.clients[client.client_id] = client
    return client


def _start_request():
    g.log = {"account_id": None, "client_id": None, "token_id": None, "perform_as": None}
    if request.path.startswith(FAULT_FREE_PREFIXES):
        return None
    latency, status, retry_after = request_fault(current_app.extensions["lever_sandbox"], request.path)
    if latency:
        time.sleep(latency)
    if status is not None:
        # An injected 429 looks like the rate limiter's own, Retry-After included when configured.
        headers = {"Retry-After": retry_after_header(retry_after)} \
            if status == 429 and current_app.config["SANDBOX_RETRY_AFTER"] else {}
        return jsonify({"code": "InternalServerError" if status >= 500 else "InjectedFault",
                        "message": "Fault injected by the Lever sandbox"}), status, headers
    return None


def _keep_state(response):
    """Every request that may have changed something is written to the state file."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        persist.save(current_app.extensions["lever_sandbox"], Path(current_app.config["SANDBOX_STATE_FILE"]))
    return response


def _log_request(response):
    if request.path.startswith(LOGGED_PREFIXES):
        state = current_app.extensions["lever_sandbox"]
        entry = getattr(g, "log", {})
        with state.lock:
            state.request_seq += 1
            state.requests.append({
                "seq": state.request_seq, "at": now_ms(), "method": request.method,
                "path": request.path, "query": request.args.to_dict(flat=True),
                "account_id": entry.get("account_id"), "client_id": entry.get("client_id"),
                "token_id": entry.get("token_id"),
                "perform_as": entry.get("perform_as") or request.args.get("perform_as"),
                "status": response.status_code,
            })
    return response


def _http_error(exc: HTTPException):
    # Lever answers API errors as {"code", "message"}; pages keep werkzeug's HTML.
    if request.path.startswith(("/v1/", "/_sandbox")):
        code = "".join(word.capitalize() for word in (exc.name or "Error").split())
        return jsonify({"code": code, "message": exc.description}), exc.code
    return exc
