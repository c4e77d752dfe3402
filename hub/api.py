"""The JSON API for WeCP's front end and scripts: bearer tokens or the session cookie plus CSRF."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from marshmallow import Schema, ValidationError, fields
from werkzeug.exceptions import HTTPException

from .auth import login_required
from .extensions import csrf
from .openapi import document, operation
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


class OrganizationSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class MeSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    role = fields.String()
    organization = fields.Nested(OrganizationSchema)


class PartnerKeySchema(Schema):
    id = fields.Integer()
    ends_with = fields.String()
    created_at = fields.String(metadata={"format": "date-time"})
    expires_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    last_used_at = fields.String(allow_none=True, metadata={"format": "date-time"})


class SlotSchema(Schema):
    """One provider's connection of a card (``settings.card_json``)."""

    account = fields.String(allow_none=True)
    connected_by = fields.String(allow_none=True)
    connected_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    revoked_reason = fields.String(allow_none=True)
    setup_error = fields.String(allow_none=True)
    last_refresh_error = fields.String(allow_none=True)
    hints = fields.List(fields.Raw())
    renew_by = fields.String(allow_none=True, metadata={"format": "date-time"})
    keys = fields.List(fields.Nested(PartnerKeySchema), metadata={"description": "Partner keys WeCP issued"})


class ProviderConnectionSchema(SlotSchema):
    provider = fields.String()
    kind = fields.String(metadata={"description": "oauth2, pasted_credential or partner_key"})
    status = fields.String()


class StepSchema(Schema):
    label = fields.String()
    done = fields.Boolean()
    hint = fields.String(allow_none=True)


class AlertSchema(Schema):
    level = fields.String()
    message = fields.String()
    next_step = fields.String(allow_none=True)
    link = fields.String(allow_none=True)


class IntegrationSchema(SlotSchema):
    """A card of Settings › Integrations: its first provider's connection at the top level."""

    key = fields.String()
    title = fields.String()
    description = fields.String()
    status = fields.String()
    steps = fields.List(fields.Nested(StepSchema))
    alerts = fields.List(fields.Nested(AlertSchema))
    connections = fields.List(fields.Nested(ProviderConnectionSchema))


@bp.route("/openapi.json")
@operation("This document: the API's OpenAPI 3 description.", wrapped=False)
def openapi():
    return jsonify(document())


@bp.route("/me")
@login_required
@operation("The signed-in user and their organization.", data=MeSchema, wrapped=False)
def me():
    u = g.user
    return jsonify({"id": u.id, "email": u.email, "role": u.role,
                    "organization": {"id": u.organization_id, "name": u.organization.name}})


@bp.route("/integrations")
@login_required
@operation("The organization's integrations as their cards show them.", data=IntegrationSchema, many=True)
def integrations():
    return jsonify({"data": [card_json(c) for c in integration_cards(g.user.organization_id)]})
