"""What the hub's activity log (``hub.activity``) asks of Lever: each candidate's posting and
stage and their Lever profile, the postings to filter by and the candidates of one, and the
words for Lever's writes on Settings › Work needing attention.

Lines are written as things happen (``models.record``, into the hub's log); this module only
reads Lever's own tables.
"""
from __future__ import annotations

from flask import current_app

from hub.activity import subject_names
from hub.extensions import db
from hub.plugin import ActivityContext

from .models import PostingLink, StageChange


def context(org_id: int, opportunities: set) -> dict:
    """The posting and stage each opportunity was invited from, and its Lever profile."""
    app_url = current_app.config.get("LEVER_APP_URL", "").rstrip("/")
    where = _postings_and_stages(org_id, opportunities)
    return {opp: ActivityContext(job=where.get(opp, ("", ""))[0], stage=where.get(opp, ("", ""))[1],
                                 profile_url=f"{app_url}/candidates/{opp}" if app_url else None)
            for opp in opportunities}


def moved_from(org_id: int, posting_id: str):
    """The opportunities moved into a linked stage of ``posting_id`` (a subquery).

    A test linked to two postings at one stage has two links with the same stage and test: only
    the posting kept on the move tells them apart. Moves from before the posting was kept fall
    back to the links of that stage and test, when those name one posting alone."""
    legacy = db.select(PostingLink.stage_id, PostingLink.test_id).where(
        PostingLink.organization_id == org_id).group_by(PostingLink.stage_id, PostingLink.test_id).having(
        db.func.count(db.distinct(PostingLink.posting_id)) == 1, db.func.max(PostingLink.posting_id) == posting_id)
    return db.select(StageChange.opportunity_id).where(
        StageChange.organization_id == org_id,
        db.or_(StageChange.posting_id == posting_id,
               db.and_(StageChange.posting_id.is_(None),
                       db.tuple_(StageChange.stage_id, StageChange.test_id).in_(legacy))))


def _postings_and_stages(org_id: int, opportunities: set) -> dict:
    """The posting and stage each opportunity was moved into when it was invited (the latest)."""
    if not opportunities:
        return {}
    moves = db.session.scalars(db.select(StageChange).where(
        StageChange.organization_id == org_id, StageChange.opportunity_id.in_(opportunities))
        .order_by(StageChange.id)).all()
    links = db.session.scalars(db.select(PostingLink).where(PostingLink.organization_id == org_id)).all()
    by_posting = {(link.posting_id, link.test_id): link for link in links}
    by_stage: dict = {}
    for link in links:
        by_stage.setdefault((link.stage_id, link.test_id), []).append(link)
    found = {}
    for move in moves:
        if move.posting_text is not None:
            found[move.opportunity_id] = (move.posting_text, move.stage_text or "")
            continue
        if move.posting_id is not None:
            link = by_posting.get((move.posting_id, move.test_id))
        else:  # a move from before the posting was kept: only an unambiguous link names it
            candidates = by_stage.get((move.stage_id, move.test_id), [])
            link = candidates[0] if len(candidates) == 1 else None
        found[move.opportunity_id] = (link.posting_text, link.stage_text) if link else ("", "")
    return found


def postings(org_id: int) -> list[tuple[str, str]]:
    """(posting id, title) for the filter: the organization's linked postings, and those its
    candidates were invited from that are linked no more."""
    found = {link.posting_id: link.posting_text for link in db.session.scalars(
        db.select(PostingLink).where(PostingLink.organization_id == org_id))}
    for posting_id, text in db.session.execute(
            db.select(StageChange.posting_id, db.func.max(StageChange.posting_text)).where(
                StageChange.organization_id == org_id, StageChange.posting_id.is_not(None),
                StageChange.posting_text.is_not(None)).group_by(StageChange.posting_id)):
        found.setdefault(posting_id, text)
    return sorted(found.items(), key=lambda p: (p[1], p[0]))


def work_subjects(rows: list) -> dict:
    """For Settings › Work needing attention: each Lever note, tag or stage move as the candidate's
    name and the posting they were invited from, linked to their Lever profile."""
    if not rows:
        return {}
    org_id = rows[0].organization_id
    opportunities = {row.opportunity_id for row in rows if row.opportunity_id}
    names = subject_names(org_id, "wecp_lever", opportunities)
    where = _postings_and_stages(org_id, opportunities)
    app_url = current_app.config.get("LEVER_APP_URL", "").rstrip("/")
    subjects = {}
    for row in rows:
        posting = where.get(row.opportunity_id, ("", ""))[0]
        words = " · ".join(part for part in (names.get(row.opportunity_id) or "Unknown candidate", posting) if part)
        subjects[row.id] = (words, f"{app_url}/candidates/{row.opportunity_id}" if app_url else None)
    return subjects
