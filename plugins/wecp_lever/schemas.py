"""Marshmallow schemas for Lever payloads."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from hub.openapi import UtcDateTime

from .lever import LEVER_ID

# docs/providers/lever.md#ids: every id of a delivery must have the shape of a Lever id before it
# may reach a URL or a query; anything else refuses the delivery (never retried).
_ID = validate.Regexp(LEVER_ID.pattern + r"\Z", error="is not a Lever id")  # Regexp matches a prefix


class StageChangeDataSchema(Schema):
    """The ``data`` of a ``candidateStageChange`` delivery: ids only, and not signed by Lever."""

    class Meta:
        unknown = EXCLUDE

    opportunity_id = fields.String(required=True, data_key="opportunityId", validate=_ID)
    # Lever docs (/developer/documentation#webhooks): candidateId is legacy (the opportunity id).
    candidate_id = fields.String(load_default=None, allow_none=True, data_key="candidateId", validate=_ID)
    contact_id = fields.String(load_default=None, allow_none=True, data_key="contactId", validate=_ID)
    from_stage_id = fields.String(load_default=None, allow_none=True, data_key="fromStageId", validate=_ID)
    to_stage_id = fields.String(required=True, data_key="toStageId", validate=_ID)


class ArchiveChangeDataSchema(Schema):
    """The ``data`` of a ``candidateArchiveChange`` delivery (docs/providers/lever.md#archive):
    the opportunity's id is all that is used; whether it is archived is read back from Lever,
    since ``data`` is not signed."""

    class Meta:
        unknown = EXCLUDE

    opportunity_id = fields.String(required=True, data_key="opportunityId", validate=_ID)


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
    linked_at = UtcDateTime()
    linked_by = fields.Function(lambda link: link.linked_by.email if link.linked_by else None)


class PostingSchema(Schema):
    """A posting of the link picker, as Lever gives it (the fields kept: ``cache.postings``)."""

    id = fields.String()
    text = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    owner = fields.String(allow_none=True)
    hiringManager = fields.String(allow_none=True)
    user = fields.String(allow_none=True)
    categories = fields.Dict(allow_none=True)


class StageSchema(Schema):
    id = fields.String()
    text = fields.String()
