"""What the security suite needs of the partner example: a key for the organization and one of
its rows, and the partner calls that name that row (``partner_calls``).

``seed`` returns the organization's sample values: its partner key under
``partner_key:<plugin key>`` (the suite calls every partner route with it, and with another
organization's), and the ids its calls name.
"""
from __future__ import annotations

from hub.extensions import db
from hub.models import Connection, utcnow
from hub.partner_keys import issue_key

from .work import Push

#: URL arguments of the plugin's routes that name a row of one organization (its ids are in the
#: query string, checked through ``partner_calls``).
TENANT_ARGUMENTS: set[str] = set()


def connect(org) -> Connection:
    from tests.security.conftest import partner_connection

    return partner_connection(org, "partner_example", "partner")


def seed(org) -> dict:
    conn = db.session.get(Connection, org.connections["partner_example"])
    _, key = issue_key(conn, org.admin.id)
    push = Push(connection_id=conn.id, ref=f"{org.marker} send", status="done", due_at=utcnow())
    db.session.add(push)
    db.session.commit()
    return {"partner_key:partner_example": key, "partner_example_push_id": push.id}


def partner_calls(org) -> list[tuple[str, str]]:
    """(method, path) of partner calls naming ``org``'s own rows: 200 with its key, 404 with another's."""
    return [("GET", f"/partners/partner_example/status?id={org.plugin_rows['partner_example_push_id']}")]
