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
from .models import Webhook

log = logging.getLogger("wecp_lever.jobs")

STAGE_CHANGE = "candidateStageChange"
ARCHIVE_CHANGE = "candidateArchiveChange"
#: The webhooks each connection has in Lever: stage changes invite; archive changes withdraw
#: invitations not started yet.
WEBHOOK_EVENTS = (STAGE_CHANGE, ARCHIVE_CHANGE)


@dataclass(frozen=True)
class WebhookReady(Outcome):
    code: ClassVar[str] = "webhook_ready"
    created: bool = False

    def describe(self) -> str:
        return "webhooks created" if self.created else "webhooks kept"


@job("webhooks")
def register_webhook(connection_id: str) -> Outcome:
    """Make sure Lever sends this connection's stage changes and archive changes to us, each
    with a secret we know.

    Idempotent: a stored webhook that still exists at our URL for its event is kept; a webhook
    at our URL whose secret we lack (a crash between creating and saving it), or one left at an
    old URL of this connection, is deleted; then the missing ones are created and their
    signature tokens stored (the stage change's in the connection, others in ``Webhook``).
    """
    conn = db.session.get(Connection, connection_id)
    if conn is None or not conn.usable:
        return Skipped(reason="not_usable", message="connection not usable")
    url = webhook_url(conn)
    client = LeverClient(connection_id)
    extra = {row.event: row for row in db.session.scalars(db.select(Webhook).filter_by(connection_id=connection_id))}
    stored = {STAGE_CHANGE: (conn.webhook_id, conn.webhook_secret_ciphertext)}
    stored.update({event: (row.webhook_id, row.secret_ciphertext) for event, row in extra.items()})
    ours = {webhook_id for webhook_id, _ in stored.values() if webhook_id}
    try:
        keep: dict[str, dict] = {}
        for hook in client.list_webhooks():
            event = hook.get("event")
            webhook_id, secret = stored.get(event, (None, None))
            at_our_url = hook.get("url") == url
            if at_our_url and event in WEBHOOK_EVENTS and hook.get("id") == webhook_id and secret \
                    and event not in keep:
                keep[event] = hook
            elif hook.get("id") in ours or at_our_url:
                # docs/providers/lever.md#webhooks: the signature token is only
                # returned at creation, so a webhook whose token we lack must be recreated.
                try:
                    client.delete_webhook(hook["id"])
                except NotFound:
                    pass
        created = [event for event in WEBHOOK_EVENTS if event not in keep]
        for event in created:
            hook = client.create_webhook(url, event)
            token = hook["configuration"]["signatureToken"]
            if event == STAGE_CHANGE:
                conn.webhook_id, conn.webhook_secret = hook["id"], token
            else:
                row = extra.get(event)
                if row is None:
                    row = extra[event] = Webhook(connection_id=connection_id, event=event, webhook_id=hook["id"])
                    db.session.add(row)
                row.webhook_id, row.secret = hook["id"], token
        conn.setup_completed_at = utcnow()
        conn.setup_error = None
        return WebhookReady(created=bool(created))
    except LeverError as exc:
        db.session.rollback()
        conn = db.session.get(Connection, connection_id)
        conn.setup_error = f"Could not register the Lever webhook: {exc.for_admin()}"
        db.session.commit()
        if exc.status is None or exc.status == 429 or exc.status >= 500:
            raise  # transient: the queue retries with growing intervals
        return Failed(reason=conn.setup_error)
