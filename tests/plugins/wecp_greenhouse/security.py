"""What the security suite needs of the Greenhouse plugin: a key for the organization, one
interview (a test Greenhouse sent) and the partner calls that name it."""
from __future__ import annotations

import hashlib

from hub.extensions import db
from hub.models import Connection, new_uuid
from hub.partner_keys import issue_key
from plugins.wecp_greenhouse.models import Interview

#: The plugin's routes take no row ids in their paths (``partner_calls`` names them in queries).
TENANT_ARGUMENTS: set[str] = set()


def connect(org) -> Connection:
    from tests.security.conftest import partner_connection

    return partner_connection(org, "wecp_greenhouse", "greenhouse")


def seed(org) -> dict:
    conn = db.session.get(Connection, org.connections["wecp_greenhouse"])
    _, key = issue_key(conn, org.admin.id)
    interview = Interview(organization_id=org.organization_id, connection_id=conn.id, dedupe_key=hashlib.sha256(new_uuid().encode()).hexdigest(),
                          
                          test_id=org.test_id, invitation_id=org.invitation_id, result_id=org.result_id,
                          candidate_name=f"{org.marker} candidate", candidate_email="cand@example.com")
    db.session.add(interview)
    db.session.commit()
    return {"partner_key:wecp_greenhouse": key, "wecp_greenhouse_interview_id": interview.id}


def partner_calls(org) -> list[tuple[str, str]]:
    """(method, path) of calls naming ``org``'s own interview: 200 with its key, 404 with another's."""
    return [("GET", "/partners/wecp_greenhouse/test_status?partner_interview_id="
                    + org.plugin_rows["wecp_greenhouse_interview_id"])]
