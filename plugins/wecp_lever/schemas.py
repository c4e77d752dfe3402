"""Marshmallow schemas for Lever payloads."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields


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
