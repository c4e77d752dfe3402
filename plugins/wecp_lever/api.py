"""JSON API of the Lever integration: posting links of a test, and the account's postings and stages."""
from __future__ import annotations

from flask import abort, g, jsonify, request
from marshmallow import ValidationError

from hub.api import api_blueprint
from hub.assessments import services as assessments
from hub.auth import login_required
from hub.connections import TokenRefreshError
from hub.extensions import db
from hub.openapi import operation
from hub.plugin import ConnectionUnusable

from . import links
from .lever import LeverError
from .schemas import LinkSchema, PostingLinkSchema, PostingSchema, StageSchema

bp = api_blueprint("wecp_lever_api", __name__)


@bp.errorhandler(links.LinkError)
def link_error(exc: links.LinkError):
    return jsonify({"error": str(exc)}), exc.status


@bp.errorhandler(LeverError)
@bp.errorhandler(TokenRefreshError)
def lever_unreachable(exc):
    return jsonify({"error": "Lever could not be reached. Try again in a moment."}), 502


@bp.errorhandler(ConnectionUnusable)
def connection_unusable(exc):
    return jsonify({"error": "Lever no longer accepts this connection: reconnect it in "
                             "Settings › Integrations."}), 409


def _test_or_404(test_id: int):
    return assessments.get_test(test_id, g.user.organization_id) or abort(404)


@bp.route("/tests/<int:test_id>/lever-links")
@login_required
@operation("The test's links to Lever postings.", data=PostingLinkSchema, many=True)
def list_links(test_id):
    _test_or_404(test_id)
    rows = links.links_of_test(g.user.organization_id, test_id)
    return jsonify({"data": PostingLinkSchema(many=True).dump(rows)})


@bp.route("/tests/<int:test_id>/lever-links", methods=["POST"])
@login_required
@operation("Link the test to a posting's stage.", body=LinkSchema, data=PostingLinkSchema, status=201,
           errors=(400, 403, 409, 502))
def create_link(test_id):
    _test_or_404(test_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["Send a JSON object (Content-Type: application/json)."]})
    data = LinkSchema().load(body)
    link = links.create_link(g.user.organization_id, g.user.id, test_id, data["posting_id"], data["stage_id"])
    db.session.commit()
    return jsonify({"data": PostingLinkSchema().dump(link)}), 201


@bp.route("/tests/<int:test_id>/lever-links/<int:link_id>", methods=["DELETE"])
@login_required
@operation("Remove a link.", status=204, errors=(403,))
def delete_link(test_id, link_id):
    _test_or_404(test_id)
    if not links.delete_link(g.user.organization_id, g.user.id, link_id):
        abort(404)
    db.session.commit()
    return "", 204


@bp.route("/integrations/wecp_lever/postings")
@login_required
@operation("The connected Lever account's open postings.", data=PostingSchema, many=True, errors=(409, 502),
           query={"q": "Words the posting's title or categories contain."})
def postings():
    return jsonify({"data": links.postings(g.user.organization_id, request.args.get("q", ""))})


@bp.route("/integrations/wecp_lever/stages")
@login_required
@operation("The connected Lever account's stages.", data=StageSchema, many=True, errors=(409, 502))
def stages():
    return jsonify({"data": links.stages(g.user.organization_id)})
