"""Completion → Greenhouse: a completed test becomes a ``PATCH`` of the ``url`` from ``send_test``.

Greenhouse then calls ``test_status`` and shows the score and the report link
(docs/providers/greenhouse.md#mark-complete). The PATCH is durable work: stored with the result,
sent exactly once by ``mark_complete``, retried with the hub's growing intervals while Greenhouse
is down or busy, paused while the organization's Greenhouse connection is revoked (and resumed
when it is made again), and said in the activity log and on the card when it fails for good.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import ClassVar

import requests
from flask import current_app

from hub.assessments import services as assessments
from hub.extensions import db
from hub.http import session
from hub.jobs import Defer
from hub.outbox import durable, schedule_once
from hub.outcomes import Failed, Outcome

from . import followup
from .addresses import on_greenhouse
from .models import KEY, Completion, Interview, record

log = logging.getLogger("wecp_greenhouse")


@dataclass(frozen=True)
class Told(Outcome):
    """Greenhouse took the PATCH: it reads the result from ``test_status`` now."""

    code: ClassVar[str] = "told"

    def describe(self) -> str:
        return "Greenhouse was told the result is ready"


class GreenhouseUnavailable(RuntimeError):
    """Greenhouse could not take the PATCH now (a timeout, a 5xx): tried again later. The text
    names the status only, never Greenhouse's answer."""


# --- completion → a row of work ---------------------------------------------------------------

def _interview_of(invitation_id: str) -> Interview | None:
    invitation = assessments.get_invitation(invitation_id)
    if invitation is None or invitation.source != KEY or not invitation.source_ref:
        return None
    return db.session.get(Interview, invitation.source_ref)


def on_invitation_completed(sender, result_id: str, invitation_id: str, **extra) -> None:
    """A Greenhouse candidate completed their test: store the PATCH that tells Greenhouse, in the
    transaction that stores the result."""
    interview = _interview_of(invitation_id)
    if interview is None:
        return
    interview.result_id = result_id
    record("completion", "ok", "completed the test", organization_id=interview.organization_id,
           interview=interview, invitation_id=invitation_id, result_id=result_id)
    _tell(interview, result_id, f"result:{result_id}")
    followup.plan(interview, assessments.get_result(result_id))


def on_result_regraded(sender, result_id: str, previous: dict, **extra) -> None:
    """A corrected score: Greenhouse is told again and reads the new score from ``test_status``."""
    result = assessments.get_result(result_id)
    if result is None or result.source != KEY:
        return
    interview = _interview_of(result.invitation_id)
    if interview is None:
        return
    done = db.session.scalar(db.select(db.func.count(Completion.id)).where(Completion.result_id == result_id))
    record("result", "ok", f"score corrected to {result.percentage:.0f}% (was {previous['percentage']:.0f}%): "
           f"Greenhouse is told again", organization_id=interview.organization_id, interview=interview,
           result_id=result_id)
    _tell(interview, result_id, f"regrade:{result_id}:{done}")
    followup.plan(interview, result, regrade=done)


def _tell(interview: Interview, result_id: str, key: str) -> None:
    if not interview.callback_url:
        # docs/providers/greenhouse.md#test-status: an integration without the PATCH is polled.
        record("result", "skipped", "Greenhouse gave no address to tell it of the result: it shows the "
               "result when it next asks WeCP (test_status)", organization_id=interview.organization_id,
               interview=interview, result_id=result_id)
        return
    schedule_once(mark_complete, Completion(organization_id=interview.organization_id,
                                            connection_id=interview.connection_id, interview_id=interview.id,
                                            result_id=result_id, key=key))


# --- the PATCH ----------------------------------------------------------------------------------

def _describe_rows(rows: list) -> dict:
    """Settings › Work needing attention: the candidate and their Greenhouse profile."""
    interviews = {i.id: i for i in db.session.scalars(db.select(Interview).where(
        Interview.id.in_({row.interview_id for row in rows})))}
    described = {}
    for row in rows:
        interview = interviews.get(row.interview_id)
        if interview is not None:
            described[row.id] = (interview.candidate_name or interview.candidate_email, interview.profile_url)
    return described


@durable(Completion, queue="default", title="Result to Greenhouse", describe=_describe_rows)
def mark_complete(row: Completion) -> Outcome:
    """``PATCH`` the interview's ``url`` with no body (docs/providers/greenhouse.md#mark-complete)."""
    interview = db.session.get(Interview, row.interview_id)
    if not on_greenhouse(interview.callback_url):
        # Checked at send_test too; GREENHOUSE_APP_HOSTS may have changed since.
        return _give_up(row, interview, "the address Greenhouse gave is not on a Greenhouse host WeCP calls")
    config = current_app.config
    username = config.get("GREENHOUSE_PATCH_USERNAME") or ""
    # docs/providers/greenhouse.md#mark-complete: whose credential the PATCH carries is not
    # documented; WeCP's partner credential, when one is configured, else none.
    auth = (username, config.get("GREENHOUSE_PATCH_PASSWORD") or "") if username else None
    try:
        response = session().patch(interview.callback_url, auth=auth, timeout=float(config["GREENHOUSE_TIMEOUT"]),
                                   allow_redirects=False)
    except requests.RequestException as exc:
        return _again_or_give_up(row, interview, f"Greenhouse could not be reached ({type(exc).__name__})")
    status = response.status_code
    if 200 <= status < 300:
        record("result", "ok", "result sent to Greenhouse: it shows the score and the report link",
               organization_id=row.organization_id, interview=interview, result_id=row.result_id)
        return Told()
    if status == 429:
        raise Defer(_retry_after(response), "Greenhouse answered 429")
    if status >= 500 or status == 408:
        return _again_or_give_up(row, interview, f"Greenhouse answered {status}")
    if status in (404, 410):
        return _give_up(row, interview, f"Greenhouse no longer has this test ({status}): the candidate may "
                        "have been hired, rejected or removed there (Greenhouse updates only active, unhired "
                        "candidates)")
    if status in (401, 403):
        return _give_up(row, interview, f"Greenhouse refused WeCP's call ({status}): WeCP's support must check "
                        "WeCP's Greenhouse partner credential, then Retry")
    return _give_up(row, interview, f"Greenhouse refused the call ({status})")


def _retry_after(response) -> float:
    # docs/providers/greenhouse.md#harvest-rate-limits: Retry-After in seconds; a minute if absent.
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return 60.0
    return min(max(seconds, 1.0), 3600.0) if math.isfinite(seconds) else 60.0


def _attempts_allowed() -> int:
    return 1 + len(current_app.config.get("HUB_RETRY_INTERVALS") or ())


def _again_or_give_up(row: Completion, interview: Interview, why: str) -> Outcome:
    """Raise to be tried again later, unless this was the last try: then fail for good, said."""
    if row.attempts < _attempts_allowed():
        raise GreenhouseUnavailable(why)
    return _give_up(row, interview, f"{why}, {row.attempts} times")


def _give_up(row: Completion, interview: Interview, why: str) -> Outcome:
    record("result", "failed", f"Greenhouse was not told of the result: {why}. It still shows the result "
           "when it asks WeCP (test_status); Retry under Work needing attention.",
           organization_id=row.organization_id, interview=interview, result_id=row.result_id)
    log.warning("wecp_greenhouse.patch_failed completion=%s", row.id)
    return Failed(reason=f"Greenhouse was not told of the result: {why}")
