"""Harvest follow-ups of a result, for organizations that connected Harvest (optional): the score
as a note on the candidate, and a move of those who pass to the stage the admin picked for the job.

Each is durable work (``HarvestWrite``), scheduled in the transaction that stores the result,
written once by ``write``, paused while Harvest is revoked and resumed when it is reconnected. The
Assessment API result (``test_status``) stays the result of record; these never hold it up.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from flask import current_app

from hub.assessments import services as assessments
from hub.connections import TokenRefreshError, connection_of
from hub.extensions import db
from hub.jobs import Defer
from hub.models import Connection
from hub.outbox import durable, schedule_once
from hub.outcomes import AlreadyDone, Failed, Outcome, Skipped
from hub.plugin import ConnectionUnusable

from . import harvest
from .harvest import HarvestNotFound, HarvestRefused, InvalidId
from .models import KEY, HarvestWrite, Interview, record

log = logging.getLogger("wecp_greenhouse")

#: The Harvest provider's name (the card's second connection).
PROVIDER = "harvest"
#: Printed in every note, followed by the report's address: how a re-run finds its own note.
REPORT_LINE = "View a detailed report on WeCP: "


@dataclass(frozen=True)
class Noted(Outcome):
    code: ClassVar[str] = "noted"

    def describe(self) -> str:
        return "the score is a note on the candidate in Greenhouse"


@dataclass(frozen=True)
class Moved(Outcome):
    code: ClassVar[str] = "moved"
    stage: str = ""

    def describe(self) -> str:
        return f"moved to “{self.stage}” in Greenhouse (passed)"


def moves_of(connection) -> dict[str, dict]:
    """The stages picked per job: ``{job id: {"stage_id", "stage", "job"}}`` (the Harvest page)."""
    return dict((connection.data or {}).get("move_to") or {})


def notes_on(connection) -> bool:
    return bool((connection.data or {}).get("notes", True))


def job_title(organization_id: int, application_id: int | None) -> str | None:
    """The job the candidate applied for, read through Harvest while Greenhouse waits for
    ``send_test`` (the Assessment API names no job: docs/providers/greenhouse.md#send-test), for
    the invitation email. Best effort and quick: without Harvest, or when it cannot answer within
    ``GREENHOUSE_HARVEST_SEND_TIMEOUT``, the email names the employer and the test only."""
    conn = connection_of(organization_id, KEY, PROVIDER)
    if application_id is None or conn is None or not conn.usable:
        return None
    try:
        found = harvest.application(conn.id, application_id,
                                    timeout=float(current_app.config["GREENHOUSE_HARVEST_SEND_TIMEOUT"]))
    except (harvest.HarvestError, Defer, ConnectionUnusable, TokenRefreshError, InvalidId, ValueError) as exc:
        log.info("wecp_greenhouse.job_unread organization=%s error=%s", organization_id, type(exc).__name__)
        return None
    jobs = found.get("jobs") or [found.get("job")]
    name = jobs[0].get("name") if isinstance(jobs, list) and jobs and isinstance(jobs[0], dict) else None
    return (str(name).strip()[:200] or None) if name else None


# --- a result → rows of work --------------------------------------------------------------------

def plan(interview: Interview, result, *, regrade: int | None = None) -> None:
    """After a result (or a corrected one): the note, and the move if the candidate passed and a
    stage is picked for some job. Nothing when the organization has no Harvest connection."""
    conn = connection_of(interview.organization_id, KEY, PROVIDER)
    if conn is None or conn.status == conn.NOT_CONNECTED:
        return
    wanted = notes_on(conn), bool(result.passed and moves_of(conn))
    if not any(wanted):
        return
    if interview.candidate_id is None or interview.application_id is None:
        record("harvest", "skipped", "no note or move in Greenhouse: Greenhouse gave no profile link with "
               "this test, so WeCP does not know the candidate there", organization_id=interview.organization_id,
               interview=interview, result_id=result.id)
        return
    suffix = f":{regrade}" if regrade is not None else ""
    if wanted[0]:
        schedule_once(write, HarvestWrite(organization_id=interview.organization_id, connection_id=conn.id,
                                          interview_id=interview.id, result_id=result.id, action="note",
                                          key=f"note:{result.id}{suffix}"))
    if wanted[1]:
        # Once per result: a corrected score that passes after all moves then, never twice.
        schedule_once(write, HarvestWrite(organization_id=interview.organization_id, connection_id=conn.id,
                                          interview_id=interview.id, result_id=result.id, action="move",
                                          key=f"move:{result.id}"))


# --- the writes ---------------------------------------------------------------------------------

def _describe_rows(rows: list) -> dict:
    """Settings › Work needing attention: the candidate and their Greenhouse profile."""
    interviews = {i.id: i for i in db.session.scalars(db.select(Interview).where(
        Interview.id.in_({row.interview_id for row in rows})))}
    return {row.id: (f"{i.candidate_name or i.candidate_email} · {row.action}", i.profile_url)
            for row in rows if (i := interviews.get(row.interview_id)) is not None}


@durable(HarvestWrite, queue="default", title="Note or move in Greenhouse", describe=_describe_rows)
def write(row: HarvestWrite) -> Outcome:
    """Write one note or make one move (docs/providers/greenhouse.md#harvest-notes, #harvest-move)."""
    interview = db.session.get(Interview, row.interview_id)
    result = assessments.get_result(row.result_id)
    if result is None:
        return Skipped("result_deleted", "the result was deleted in WeCP")
    try:
        outcome = _note(row, interview, result) if row.action == "note" else _move(row, interview, result)
    except HarvestNotFound as exc:
        outcome = _failed(row, interview, f"{exc.for_admin()}. Greenhouse does not have it there (the "
                          "candidate may have been deleted or merged, or Greenhouse changed this call)")
    except HarvestRefused as exc:
        # docs/providers/greenhouse.md#on-behalf-of: a write refused for the acting user's rights.
        outcome = _failed(row, interview, f"{exc.for_admin()}. If it names permissions, reconnect Harvest as "
                          "a Site Admin (or with the service account) who can add notes and move candidates")
    except InvalidId:
        outcome = _failed(row, interview, "Greenhouse answered with an id WeCP does not accept")
    if not isinstance(outcome, Failed):
        record("harvest", "ok" if outcome.status == "done" else "skipped", outcome.describe(),
               organization_id=row.organization_id, interview=interview, result_id=row.result_id)
    return outcome


def note_text(result, test_title: str) -> str:
    verdict = "passed" if result.passed else "did not pass"
    return (f"WeCP test “{test_title}”: {result.score:g} / {result.max_score:g} ({result.percentage:.0f}%), "
            f"{verdict} (pass mark {result.pass_mark}%).\n{REPORT_LINE}{assessments.report_url(result.id)}")


def _note(row: HarvestWrite, interview: Interview, result) -> Outcome:
    try:
        text = note_text(result, assessments.get_test(result.test_id).title)
    except assessments.ReportLinkRevoked:
        return Skipped("report_revoked", "the report link was revoked in WeCP: no note written")
    if row.attempts > 1:
        # An earlier run may have written it before it died: the report's address finds it.
        address = text.rsplit(REPORT_LINE, 1)[1]
        if any(address in str(n.get("body") or "") for n in harvest.notes_of(row.connection_id, interview.candidate_id)):
            return AlreadyDone()
    harvest.add_note(row.connection_id, interview.candidate_id, text)
    return Noted()


def _current_stage(application: dict) -> int | None:
    stage = application.get("current_stage")
    stage_id = stage.get("id") if isinstance(stage, dict) else application.get("current_stage_id")
    return harvest.harvest_id(stage_id, "stage id") if stage_id is not None else None


def _job_of(application: dict) -> int | None:
    # docs/providers/greenhouse.md#harvest-move: v1 lists ``jobs``; v3's field is [?].
    job_id = application.get("job_id")
    if job_id is None and application.get("jobs"):
        first = application["jobs"][0]
        job_id = first.get("id") if isinstance(first, dict) else None
    return harvest.harvest_id(job_id, "job id") if job_id is not None else None


def _move(row: HarvestWrite, interview: Interview, result) -> Outcome:
    """Read the application just before (docs/providers/greenhouse.md#harvest-move), and move it
    only forward: never an inactive one, never back from a later stage, never twice."""
    if not result.passed:
        return Skipped("not_passed", "the corrected score no longer passes: not moved")
    conn = db.session.get(Connection, row.connection_id)
    application = harvest.application(row.connection_id, interview.application_id)
    if application.get("status", "active") != "active":
        return Skipped("not_active", f"not moved: the application is {application.get('status')} in Greenhouse")
    job_id = _job_of(application)
    picked = moves_of(conn).get(str(job_id)) if job_id is not None else None
    if picked is None:
        return Skipped("no_stage_picked", "not moved: no stage is picked for this job on WeCP's Greenhouse page")
    target = harvest.harvest_id(picked["stage_id"], "stage id")
    current = _current_stage(application)
    if current == target:
        return AlreadyDone() if row.attempts > 1 else Skipped("already_there", f"already in “{picked['stage']}”")
    order = [s["id"] for s in harvest.job_stages(row.connection_id).get(job_id, [])]
    if target not in order:
        return _failed(row, interview, f"the stage picked for this job (“{picked['stage']}”) is no longer in "
                       "its hiring plan: pick another on WeCP's Greenhouse page")
    if current is None or current not in order or order.index(current) > order.index(target):
        return Skipped("already_past", f"not moved: the candidate is already past “{picked['stage']}”")
    harvest.move(row.connection_id, interview.application_id, current, target)
    return Moved(stage=picked["stage"])


def _failed(row: HarvestWrite, interview: Interview, why: str) -> Failed:
    what = "The score was not written as a note" if row.action == "note" else "The candidate was not moved"
    record("harvest", "failed", f"{what} in Greenhouse: {why}. The result is in Greenhouse through the "
           "assessment either way; Retry under Work needing attention.",
           organization_id=row.organization_id, interview=interview, result_id=row.result_id)
    log.warning("wecp_greenhouse.harvest_write_failed row=%s action=%s", row.id, row.action)
    return Failed(reason=f"{what} in Greenhouse: {why}")
