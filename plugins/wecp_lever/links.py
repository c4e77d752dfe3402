"""Linking WeCP tests to Lever postings and stages: the rules, shared by the pages and the API.

Functions work in the caller's transaction; the page or API call commits.
"""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from hub.assessments import services as assessments
from hub.extensions import db
from hub.models import Connection, audit

from . import cache
from .models import PostingLink

KEY = "wecp_lever"


class LinkError(Exception):
    """A link that cannot be made; ``status`` is the HTTP answer the API gives."""

    status = 400


class LinkConflict(LinkError):
    status = 409


class NotConnected(LinkError):
    status = 409


def active_connection(org_id: int) -> Connection:
    conn = db.session.scalar(db.select(Connection).filter_by(organization_id=org_id, plugin_key=KEY))
    if conn is None or not conn.usable:
        raise NotConnected("Connect Lever first (Settings › Integrations).")
    return conn


def postings(org_id: int, query: str = "") -> list[dict]:
    """The connected account's postings (closed ones hidden), filtered by ``query``."""
    conn = active_connection(org_id)
    words = query.lower().split()
    rows = cache.postings(conn.id)
    if words:
        rows = [p for p in rows if all(w in _haystack(p) for w in words)]
    return sorted(rows, key=lambda p: (p.get("text") or "").lower())


def _haystack(posting: dict) -> str:
    categories = posting.get("categories") or {}
    return " ".join([posting.get("text") or "", *[str(v) for v in categories.values() if v]]).lower()


def stages(org_id: int) -> list[dict]:
    return cache.stages(active_connection(org_id).id)


def create_link(org_id: int, user_id: int, test_id: int, posting_id: str, stage_id: str) -> PostingLink:
    """Link a test to a posting and stage; one test never links to two stages of one posting."""
    if assessments.get_test(test_id, org_id) is None:
        raise LinkError("No such test.")
    posting = next((p for p in postings(org_id) if p["id"] == posting_id), None)
    if posting is None:
        raise LinkError("Pick a posting of the connected Lever account (closed postings cannot be linked).")
    stage = next((s for s in stages(org_id) if s["id"] == stage_id), None)
    if stage is None:
        raise LinkError("Pick one of Lever's stages.")
    existing = db.session.scalar(db.select(PostingLink).filter_by(test_id=test_id, posting_id=posting_id))
    if existing is not None:
        raise LinkConflict(_conflict_message(existing))
    link = PostingLink(organization_id=org_id, test_id=test_id, posting_id=posting_id,
                       posting_text=posting.get("text") or "", stage_id=stage_id,
                       stage_text=stage.get("text") or "", linked_by_id=user_id)
    try:
        with db.session.begin_nested():
            db.session.add(link)
    except IntegrityError:  # a concurrent link of the same posting won
        existing = db.session.scalar(db.select(PostingLink).filter_by(test_id=test_id, posting_id=posting_id))
        raise LinkConflict(_conflict_message(existing)) from None
    audit("wecp_lever.link_created", organization_id=org_id, user_id=user_id, target=f"test:{test_id}",
          posting_id=posting_id, stage_id=stage_id)
    return link


def _conflict_message(existing: PostingLink | None) -> str:
    stage = f"“{existing.stage_text}”" if existing else "another stage"
    return (f"This test is already linked to that posting at stage {stage}. A test can link to "
            f"many postings, but to only one stage of each; unlink it first to change the stage.")


def delete_link(org_id: int, user_id: int, link_id: int) -> bool:
    link = db.session.get(PostingLink, link_id)
    if link is None or link.organization_id != org_id:
        return False
    audit("wecp_lever.link_deleted", organization_id=org_id, user_id=user_id, target=f"test:{link.test_id}",
          posting_id=link.posting_id, stage_id=link.stage_id)
    db.session.delete(link)
    return True


def links_of_test(org_id: int, test_id: int) -> list[PostingLink]:
    return list(db.session.scalars(db.select(PostingLink).filter_by(
        organization_id=org_id, test_id=test_id).order_by(PostingLink.linked_at)))
