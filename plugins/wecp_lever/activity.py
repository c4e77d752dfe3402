"""The Lever activity log as a recruiter reads it: names, posting and stage, plain words, links.

Activity lines are written as things happen (``models.record``); this module only reads them:
it fills in what a line does not carry itself (the candidate's name from another line of the
same opportunity, the posting and stage from the move that invited them, the Lever profile and
the report), applies the page's filters and counts the organization's open and failed work.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app

from hub.assessments import services as assessments
from hub.extensions import db

from .lever import LEVER_ID
from .models import Activity, PostingLink, StageChange

#: What each kind of line is about, in a recruiter's words.
KIND_LABELS = {
    "webhook": "Stage change", "invitation": "Invitation", "email": "Email", "start": "Test started",
    "completion": "Test completed",
    "note": "Result note", "tag": "Tags", "move": "Stage move", "setup": "Setup",
}
#: How it went, in a recruiter's words.
STATUS_LABELS = {"ok": "Done", "skipped": "Skipped", "failed": "Failed", "paused": "Paused",
                 "missed": "No webhook", "expired": "Expired",
                 "cancelled": "Withdrawn"}
#: Lines per page.
LIMIT = 200


@dataclass
class Filters:
    status: str = ""
    posting: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_args(cls, args) -> Filters:
        """The page's query string; anything not understood is ignored (the filter is off)."""
        status, posting = args.get("status", ""), args.get("posting", "")
        return cls(status=status if status in STATUS_LABELS else "",
                   posting=posting if LEVER_ID.fullmatch(posting) else "", since=_day(args.get("since")),
                   until=_day(args.get("until")))

    @property
    def active(self) -> bool:
        return bool(self.status or self.posting or self.since or self.until)


def _day(text) -> datetime | None:
    try:
        return datetime.strptime((text or "")[:10], "%Y-%m-%d")
    except ValueError:
        return None


def lines(org_id: int, filters: Filters) -> list[dict]:
    """The newest lines matching ``filters``, each with what the page shows."""
    query = db.select(Activity).where(Activity.organization_id == org_id)
    if filters.status:
        query = query.where(Activity.status == filters.status)
    if filters.since:
        query = query.where(Activity.created_at >= filters.since)
    if filters.until and filters.until.date() < datetime.max.date():  # 9999-12-31: no end (#39, 7)
        query = query.where(Activity.created_at < filters.until + timedelta(days=1))
    if filters.posting:
        # A posting's lines: those of the candidates moved into a stage linked for that posting.
        query = query.where(Activity.opportunity_id.in_(moved_from(org_id, filters.posting)))
    rows = db.session.scalars(query.order_by(Activity.id.desc()).limit(LIMIT)).all()
    opportunities = {r.opportunity_id for r in rows if r.opportunity_id}
    names = candidate_names(org_id, opportunities, rows)
    where = _postings_and_stages(org_id, opportunities)
    app_url = current_app.config.get("LEVER_APP_URL", "").rstrip("/")
    emails = {r.invitation_id: assessments.get_invitation(r.invitation_id) for r in rows
              if r.kind == "invitation" and r.invitation_id}
    shown = []
    for row in rows:
        posting, stage = where.get(row.opportunity_id, ("", ""))
        invitation = emails.get(row.invitation_id) if row.kind == "invitation" else None
        shown.append({
            "row": row, "when": row.created_at,
            "candidate": names.get(row.opportunity_id) or row.candidate_name or "Unknown candidate",
            "posting": posting, "stage": stage,
            "what": KIND_LABELS.get(row.kind, row.kind.capitalize()),
            "status": STATUS_LABELS.get(row.status, row.status.capitalize()),
            "profile_url": f"{app_url}/candidates/{row.opportunity_id}" if app_url and row.opportunity_id else None,
            "report_url": _report(row.result_id),
            "email": invitation,
        })
    return shown


def candidate_names(org_id: int, opportunities: set, rows=()) -> dict:
    """A name for every opportunity: lines about notes and tags carry none of their own."""
    names = {r.opportunity_id: r.candidate_name for r in rows if r.opportunity_id and r.candidate_name}
    missing = opportunities - set(names)
    if missing:
        names.update(db.session.execute(
            db.select(Activity.opportunity_id, db.func.max(Activity.candidate_name)).where(
                Activity.organization_id == org_id, Activity.opportunity_id.in_(missing),
                Activity.candidate_name.is_not(None)).group_by(Activity.opportunity_id)).all())
    return names


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


def _report(result_id) -> str | None:
    if not result_id:
        return None
    try:
        return assessments.report_url(result_id)
    except (LookupError, assessments.ReportLinkRevoked):  # revoked by an admin, or deleted since
        return None


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
    names = candidate_names(org_id, opportunities)
    where = _postings_and_stages(org_id, opportunities)
    app_url = current_app.config.get("LEVER_APP_URL", "").rstrip("/")
    subjects = {}
    for row in rows:
        posting = where.get(row.opportunity_id, ("", ""))[0]
        words = " · ".join(part for part in (names.get(row.opportunity_id) or "Unknown candidate", posting) if part)
        subjects[row.id] = (words, f"{app_url}/candidates/{row.opportunity_id}" if app_url else None)
    return subjects
