"""Verify and parse Lever webhook deliveries (pure functions), and the plugin's WebhookSource."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

from flask import current_app

from hub.plugin import BadSignature, IncomingEvent, MalformedPayload, Ping, WebhookSource

# docs/providers/lever.md#webhooks: the events an account can subscribe to.
LEVER_EVENTS = frozenset({
    "applicationCreated", "candidateHired", "candidateStageChange", "candidateArchiveChange",
    "candidateDeleted", "interviewCreated", "interviewUpdated", "interviewDeleted",
    "contactCreated", "contactUpdated",
})

#: Events WeCP acts on; other Lever events are stored and recorded as unsupported.
SUPPORTED_EVENTS = frozenset({"candidateStageChange", "candidateArchiveChange"})

#: Events with a webhook (and signature token) of their own besides the stage change's.
EXTRA_WEBHOOK_EVENTS = frozenset({"candidateArchiveChange"})

#: Deliveries dated this far in the future are refused (clock skew allowance), in seconds.
MAX_FUTURE_SECONDS = 300

# docs/providers/lever.md#webhooks: every delivery carries these four fields.
ENVELOPE = ("triggeredAt", "signature", "token", "event")


def parse_body(body: bytes) -> dict:
    """The JSON object of a delivery; ``MalformedPayload`` when it is not one."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedPayload("the body is not JSON") from exc
    if not isinstance(payload, dict):
        raise MalformedPayload("the body is not a JSON object")
    return payload


def is_verify_request(payload: dict) -> bool:
    """Lever's "Verify Connection" button: a request of undocumented shape.

    Lever docs (/developer/documentation#webhooks) do not describe it, so anything that is not
    a well-formed delivery of a known Lever event counts as one (answered 200, nothing stored).
    """
    return any(field not in payload for field in ENVELOPE) or payload.get("event") not in LEVER_EVENTS


def expected_signature(secret: str, token: str, triggered_at: int) -> str:
    # docs/providers/lever.md#webhooks: hex HMAC-SHA256, key = the webhook's
    # signatureToken, message = token + triggeredAt. The `data` part is NOT signed.
    return hmac.new(secret.encode(), (token + str(triggered_at)).encode(), hashlib.sha256).hexdigest()


def verify_signature(secret: str | None, payload: dict) -> None:
    """Raise ``BadSignature`` unless the delivery was signed with ``secret``."""
    token, signature, triggered_at = payload["token"], payload["signature"], payload["triggeredAt"]
    if not secret:
        raise BadSignature("the connection has no webhook secret yet")
    if not isinstance(token, str) or not token or not isinstance(signature, str):
        raise BadSignature("token and signature must be strings")
    if not isinstance(triggered_at, int) or isinstance(triggered_at, bool):
        raise MalformedPayload("triggeredAt must be epoch milliseconds")
    expected = expected_signature(secret, token, triggered_at)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise BadSignature("signature mismatch")


def check_fresh(triggered_at: int, max_age_seconds: float, now: float | None = None) -> None:
    """Refuse deliveries older than ``max_age_seconds`` or dated in the future (replays)."""
    now = time.time() if now is None else now
    try:
        age = now - triggered_at / 1000
    except OverflowError:
        raise BadSignature("the delivery date is out of range") from None
    if age > max_age_seconds:
        raise BadSignature("the delivery is too old")
    if age < -MAX_FUTURE_SECONDS:
        raise BadSignature("the delivery is dated in the future")


def parse_delivery(body: bytes, secret, max_age_seconds: float, now: float | None = None) -> IncomingEvent:
    """Verify and parse one Lever delivery into an event deduplicated on Lever's ``token``.

    ``secret``: the webhook's signature token, or a function of the event that returns it (each
    of a connection's webhooks, one per event, has its own).
    """
    if not body.strip():
        raise Ping("empty body: Lever verify connection")
    payload = parse_body(body)
    if is_verify_request(payload):
        raise Ping("Lever verify connection")
    verify_signature(secret(payload["event"]) if callable(secret) else secret, payload)
    check_fresh(payload["triggeredAt"], max_age_seconds, now)
    if not isinstance(payload.get("data", {}), dict):
        raise MalformedPayload("data must be an object")
    if len(payload["token"]) > 200:
        raise MalformedPayload("token is too long")
    # docs/providers/lever.md#webhooks: the token is unique per delivery and kept
    # on Lever's retries, so it is the dedupe key.
    return IncomingEvent(event=payload["event"], dedupe_key=payload["token"], payload=payload)


def secret_for(connection, event: str) -> str | None:
    """The signature token of the connection's webhook for ``event``: its own webhook's when it
    has one besides the stage change's (``models.Webhook``, read only for those rarer events),
    else the connection's (cached by the intake: no query on the busy path)."""
    if event in EXTRA_WEBHOOK_EVENTS:
        from hub.extensions import db

        from .models import Webhook

        row = db.session.scalar(db.select(Webhook).filter_by(connection_id=connection.id, event=event))
        if row is not None:
            return row.secret
    return connection.webhook_secret


class LeverWebhookSource(WebhookSource):
    """Lever's signed JSON deliveries for one connection (its webhook's signatureToken)."""

    name = "lever"

    def receive(self, connection, body, headers):
        max_age = float(current_app.config.get("LEVER_WEBHOOK_MAX_AGE_SECONDS", 600))
        return parse_delivery(body, lambda event: secret_for(connection, event), max_age)

    def handle(self, delivery, connection):
        from .flow import handle_delivery

        return handle_delivery(delivery, connection)
