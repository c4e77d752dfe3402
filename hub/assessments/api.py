"""JSON API for tests: list, read and create, under /api/v1 with the hub API's auth and CSRF rules."""
from __future__ import annotations

from flask import g, jsonify, request, url_for
from marshmallow import ValidationError

from .. import api as hub_api
from ..auth import get_scoped_or_404, login_required, scoped
from ..extensions import db
from ..models import audit
from ..openapi import operation
from .models import AssessmentTest
from .schemas import AssessmentTestSchema, AssessmentTestSummarySchema
from .services import save_test

bp = hub_api.api_blueprint("assessments_api", __name__)


@bp.route("/tests")
@login_required
@operation("The organization's tests.", data=AssessmentTestSummarySchema, many=True)
def list_tests():
    rows = db.session.scalars(scoped(AssessmentTest).order_by(AssessmentTest.id)).all()
    return jsonify({"data": AssessmentTestSummarySchema(many=True).dump(rows)})


@bp.route("/tests/<int:test_id>")
@login_required
@operation("One test with its questions.", data=AssessmentTestSchema)
def get_test(test_id):
    return jsonify({"data": AssessmentTestSchema().dump(get_scoped_or_404(AssessmentTest, test_id))})


@bp.route("/tests", methods=["POST"])
@login_required
@operation("Create a test.", body=AssessmentTestSchema, data=AssessmentTestSchema, status=201, errors=(403,))
def create_test():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["Send a JSON object (Content-Type: application/json)."]})
    data = AssessmentTestSchema().load(body)
    test = save_test(g.user.organization_id, data, user_id=g.user.id)
    db.session.flush()
    audit("test.created", organization_id=test.organization_id, user_id=g.user.id,
          target=f"assessment_test:{test.id}", via="api")
    db.session.commit()
    response = jsonify({"data": AssessmentTestSchema().dump(test)})
    response.status_code = 201
    response.headers["Location"] = url_for(".get_test", test_id=test.id)
    return response
