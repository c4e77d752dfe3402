"""Background jobs of the WeCP–Lever integration (each takes ids and runs in a worker)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from hub.connections import webhook_url
from hub.extensions import db
from hub.jobs import job
from hub.models import Connection, utcnow
from hub.outcomes import Failed, Outcome, Skipped

from .lever import LeverClient, LeverError, NotFound

log = logging.getLogger("wecp_lever.jobs")

STAGE_CHANGE = "candidateStageChange"


@dataclass(frozen=True)
class WebhookReady(Outcome):
    code: ClassVar[str] = "webhook_ready"
    created: bool = False

    def describe(self) -> str:
        return "webhook created" if self.created else "webhook kept"


@job("webhooks")
def register_webhook(connection_id: str) -> Outcome:
    """Make sure Lever sends this connection's stage changes to us, with a secret we know.

    Idempotent: a stored webhook that still exists at our URL is kept; a webhook at our URL whose
    secret we lack (a crash between creating and saving it), or one left at an old URL of this
    connection, is deleted; then one is created and its signature token stored.
    """
    conn = db.session.get(Connection, connection_id)
    if conn is None or not conn.usable:
        return Skipped(reason="not_usable", message="connection not usable")
    url = webhook_url(conn)
    client = LeverClient(connection_id)
    try:
        keep = None
        for hook in client.list_webhooks():
            ours_by_id = conn.webhook_id is not None and hook.get("id") == conn.webhook_id
            at_our_url = hook.get("url") == url
            if ours_by_id and at_our_url and conn.webhook_secret and keep is None:
                keep = hook
            elif ours_by_id or at_our_url:
                # docs/providers/lever.md#webhooks: the signature token is only
                # returned at creation, so a webhook whose token we lack must be recreated.
                try:
                    client.delete_webhook(hook["id"])
                except NotFound:
                    pass
        if keep is None:
            created = client.create_webhook(url, STAGE_CHANGE)
            conn.webhook_id = created["id"]
            conn.webhook_secret = created["configuration"]["signatureToken"]
        conn.setup_completed_at = utcnow()
        conn.setup_error = None
        return WebhookReady(created=keep is None)
    except LeverError as exc:
        db.session.rollback()
        conn = db.session.get(Connection, connection_id)
        conn.setup_error = f"Could not register the Lever webhook: {exc.for_admin()}"
        db.session.commit()
        if exc.status is None or exc.status == 429 or exc.status >= 500:
            raise  # transient: the queue retries with growing intervals
        return Failed(reason=conn.setup_error)
