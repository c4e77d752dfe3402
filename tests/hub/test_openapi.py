"""The API described (hub.openapi): every /api/v1 route is in the document, the document is served,
and the live app answers as it says (schemathesis: generated calls, each answer checked)."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from hub.assessments.services import save_test
from hub.extensions import db
from hub.models import ApiToken
from hub.openapi import undocumented

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_api_route_of_the_hub_and_its_plugins_is_described(app):
    assert undocumented(app) == []


def test_a_route_without_a_declaration_is_found(app):
    from flask import Blueprint

    extra = Blueprint("extra_api", __name__, url_prefix="/api/v1")
    extra.add_url_rule("/extra", "extra", lambda: {})
    app.register_blueprint(extra)
    assert undocumented(app) == ["extra_api.extra /api/v1/extra"]


def test_the_document_is_served_to_anyone_and_names_each_operation(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json
    assert document["openapi"].startswith("3.0")
    assert document["paths"]["/tests"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AssessmentTest"}
    assert set(document["paths"]["/tests/{test_id}"]["get"]["responses"]) >= {"200", "401", "404"}
    assert "bearer" in document["components"]["securitySchemes"]


@pytest.fixture
def member_token(pg_app, make_user):
    user = make_user(role="member")
    save_test(user.organization_id, {"title": "Warm-up", "description": "", "pass_mark": 60,
                                     "time_limit_minutes": 30, "valid_days": 7, "questions": [
        {"text": "1 + 1?", "kind": "single", "options": ["1", "2"], "correct": [1]}]}, user_id=user.id)
    token, plaintext = ApiToken.issue(user, "openapi-check")
    db.session.add(token)
    db.session.commit()
    return plaintext


def test_the_live_api_answers_as_its_document_says(pg_app, member_token):
    """Generated calls to every operation, signed in as a member: no 500, every status code,
    content type and body as documented (positive and negative data)."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", pg_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    headers = {"Authorization": f"Bearer {member_token}"}
    for operation in operations:
        @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(headers=headers, checks=CHECKS)
        check()
        db.session.rollback()
