"""Marshmallow schemas for Lever payloads."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate


class StageChangeDataSchema(Schema):
    """The ``data`` of a ``candidateStageChange`` delivery: ids only, and not signed by Lever."""

    class Meta:
        unknown = EXCLUDE

    opportunity_id = fields.String(required=True, data_key="opportunityId")
    # Lever docs (/developer/documentation#webhooks): candidateId is legacy (the opportunity id).
    candidate_id = fields.String(load_default=None, allow_none=True, data_key="candidateId")
    contact_id = fields.String(load_default=None, allow_none=True, data_key="contactId")
    from_stage_id = fields.String(load_default=None, allow_none=True, data_key="fromStageId")
    to_stage_id = fields.String(required=True, data_key="toStageId")


class LinkSchema(Schema):
    """Body of ``POST /api/v1/tests/<id>/lever-links``: unknown fields are refused."""

    posting_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    stage_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class PostingLinkSchema(Schema):
    id = fields.Integer()
    test_id = fields.Integer()
    posting_id = fields.String()
    posting_text = fields.String()
    stage_id = fields.String()
    stage_text = fields.String()
    linked_at = fields.DateTime()
    linked_by = fields.Function(lambda link: link.linked_by.email if link.linked_by else None)
