"""The JSON API for WeCP's front end and scripts: bearer tokens or the session cookie plus CSRF."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from .auth import login_required
from .extensions import csrf
from .security import error_headers
from .settings import card_json, integration_cards


def check_csrf():
    """Cookie calls that change state must carry the CSRF token; bearer calls carry no cookie."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and not g.get("api_token"):
        csrf.protect()


def validation_error(exc: ValidationError):
    return jsonify({"error": "invalid input", "fields": exc.messages}), 422


def http_error(exc: HTTPException):
    return jsonify({"error": exc.description or exc.name}), exc.code, error_headers(exc)


def api_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint under ``/api/v1`` with the API's rules: auth by bearer token or session
    cookie plus CSRF, and JSON errors. Hub modules and plugins make their API parts with it."""
    api = Blueprint(name, import_name, url_prefix="/api/v1")
    csrf.exempt(api)
    api.before_request(check_csrf)
    api.register_error_handler(ValidationError, validation_error)
    api.register_error_handler(HTTPException, http_error)
    return api


bp = api_blueprint("api", __name__)


@bp.route("/me")
@login_required
def me():
    u = g.user
    return jsonify({"id": u.id, "email": u.email, "role": u.role,
                    "organization": {"id": u.organization_id, "name": u.organization.name}})


@bp.route("/integrations")
@login_required
def integrations():
    return jsonify({"data": [card_json(c) for c in integration_cards(g.user.organization_id)]})
