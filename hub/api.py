"""The JSON API for WeCP's front end and scripts: bearer tokens or the session cookie plus CSRF."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from .auth import login_required
from .extensions import csrf
from .settings import card_json, integration_cards

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Bearer-token calls carry no ambient credential; cookie calls are checked in ``check_csrf``.
csrf.exempt(bp)


@bp.before_request
def check_csrf():
    if request.method not in ("GET", "HEAD", "OPTIONS") and not g.get("api_token"):
        csrf.protect()


@bp.errorhandler(ValidationError)
def validation_error(exc: ValidationError):
    return jsonify({"error": "invalid input", "fields": exc.messages}), 422


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return jsonify({"error": exc.description or exc.name}), exc.code


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
