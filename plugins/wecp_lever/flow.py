"""The invitation flow of a Lever stage change; the worker calls it once per stored delivery."""
from __future__ import annotations

from marshmallow import ValidationError

from hub.extensions import db
from hub.jobs import Skipped
from hub.models import WebhookDelivery

from .schemas import StageChangeDataSchema
from .webhooks import SUPPORTED_EVENTS


def handle_stage_change(delivery_id: int) -> str:
    """Entry point of the flow (the source's ``handler``), to be filled with the invitation logic.

    So far it only checks the delivery: unsupported events and invalid ``data`` are recorded as
    skipped. Lever signs only token + triggeredAt, so the invitation logic must re-read the
    opportunity from Lever before acting, and key each side effect on a unique database row.
    """
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery.event not in SUPPORTED_EVENTS:
        raise Skipped(f"unsupported event {delivery.event}")
    try:
        data = StageChangeDataSchema().load((delivery.payload or {}).get("data") or {})
    except ValidationError as exc:
        raise Skipped(f"invalid data: {', '.join(sorted(exc.messages))}") from exc
    # TODO(invitations): look up the posting link for data["to_stage_id"] and invite the candidate.
    return f"stage change of {data['opportunity_id']} to {data['to_stage_id']}: no action yet"
