"""What the security suite needs of the Lever plugin: one of each of its tenant rows.

The suite imports ``tests.plugins.<key>.security`` for every loaded plugin that has one; its
``seed`` returns the sample values of the plugin's URL arguments, all naming this organization's
own rows, and ``TENANT_ARGUMENTS`` says which of them name a row of one organization.
"""
from __future__ import annotations

from hub.extensions import db
from plugins.wecp_lever.models import Note, PostingLink, Tag

#: URL arguments of the plugin's routes that name a row of one organization.
TENANT_ARGUMENTS = {"link_id", "note_id", "tag_id"}


def seed(org) -> dict:
    """A posting link, a failed note and a failed tag of ``org`` (its test, result and connection)."""
    link = PostingLink(organization_id=org.organization_id, test_id=org.test_id, posting_id="posting-1",
                       posting_text=f"{org.marker} posting", stage_id="stage-1", stage_text="Assessment")
    note = Note(organization_id=org.organization_id, connection_id=org.connections["wecp_lever"],
                key=f"result:{org.result_id}", result_id=org.result_id, opportunity_id="opp-1", status="failed")
    tag = Tag(organization_id=org.organization_id, connection_id=org.connections["wecp_lever"], key=f"result:{org.result_id}",
              opportunity_id="opp-1", tags=["WeCP: passed"], status="failed", attempts=1)
    db.session.add_all([link, note, tag])
    db.session.commit()
    return {"link_id": link.id, "note_id": note.id, "tag_id": tag.id}
