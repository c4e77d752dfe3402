"""Sign Lever webhook deliveries in tests exactly as Lever does (HMAC-SHA256 of token + triggeredAt)."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time


def sign_lever_delivery(secret: str, payload: dict, *, triggered_at: int | None = None,
                        token: str | None = None) -> dict:
    """A copy of ``payload`` dated now (or ``triggered_at``, epoch ms) with a token and a valid signature."""
    signed = dict(payload)
    signed["triggeredAt"] = int(time.time() * 1000) if triggered_at is None else triggered_at
    given = payload.get("token")
    signed["token"] = token or (given if isinstance(given, str) and given and "<" not in given
                                else secrets.token_hex(16))
    message = (signed["token"] + str(signed["triggeredAt"])).encode()
    signed["signature"] = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return signed


def lever_body(secret: str, payload: dict, **kwargs) -> bytes:
    return json.dumps(sign_lever_delivery(secret, payload, **kwargs)).encode()
