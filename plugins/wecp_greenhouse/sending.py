"""What Greenhouse's calls do: send a test once per take-home test, and say where it stands.

``send`` turns a checked ``send_test`` body into one interview, one invitation and one email,
however often Greenhouse repeats it; ``status_of`` answers ``test_status`` from WeCP's own rows.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from hub.assessments import services as assessments
from hub.extensions import db

from . import followup
from .addresses import on_greenhouse, profile_ids
from .models import KEY, Interview, record

#: ``partner_status`` while a test is not finished (docs/providers/greenhouse.md#test-status: only
#: "complete" is Greenhouse's; these lower-case words are ours, shown as they are).
STATUS_WORDS = {"invited": "sent", "started": "started", "expired": "expired", "cancelled": "cancelled"}


@dataclass(frozen=True)
class Sent:
    interview: Interview
    #: False when this call repeated an earlier send (nothing new was sent).
    created: bool


def dedupe_key(organization_id: int, test_id: int, data: dict, application_id: int | None) -> str:
    """What makes two sends the same: Greenhouse's ``url`` (one per take-home test instance),
    else the test, the candidate's email and the application (docs/providers/greenhouse.md#send-test)."""
    if data.get("url"):
        basis = f"url:{data['url']}"
    else:
        basis = f"send:{test_id}:{data['candidate']['email'].strip().lower()}:{application_id or ''}"
    return hashlib.sha256(f"{organization_id}:{basis}".encode()).hexdigest()


def _find(organization_id: int, key: str) -> Interview | None:
    return db.session.scalar(db.select(Interview).filter_by(organization_id=organization_id, dedupe_key=key))


def candidate_name(candidate: dict) -> str:
    first = (candidate.get("preferred_name") or candidate.get("first_name") or "").strip()
    return " ".join(part for part in (first, (candidate.get("last_name") or "").strip()) if part)[:200]


def send(organization_id: int, connection_id: str, test, data: dict) -> Sent:
    """The interview of this send: made now (with its invitation, its queued email and its
    activity line, all in the caller's transaction) or found from an earlier call."""
    candidate = data["candidate"]
    profile = candidate.get("greenhouse_profile_url")
    profile = profile if on_greenhouse(profile) else None
    candidate_id, application_id = profile_ids(profile)
    key = dedupe_key(organization_id, test.id, data, application_id)
    found = _find(organization_id, key)
    if found is not None:
        return Sent(found, False)
    name = candidate_name(candidate)
    job = followup.job_title(organization_id, application_id)
    interview = Interview(organization_id=organization_id, connection_id=connection_id, dedupe_key=key,
                          test_id=test.id, callback_url=data.get("url"), candidate_name=name, job_title=job,
                          candidate_email=candidate["email"].strip(), profile_url=profile,
                          application_id=application_id, candidate_id=candidate_id, sent_by=data.get("sent_by"))
    try:
        # The unique (organization, key) settles concurrent repeats: one inserts, the others
        # wait for its commit and then find its row.
        with db.session.begin_nested():
            db.session.add(interview)
    except IntegrityError:
        return Sent(_find(organization_id, key), False)
    invitation_id, _ = assessments.invite(
        test.id, name=name, email=interview.candidate_email, source=KEY, source_ref=interview.id,
        idempotency_key=f"{KEY}:{organization_id}:{key}", job_title=job)
    interview.invitation_id = invitation_id
    by = f" (Send Test by {interview.sent_by})" if interview.sent_by else ""
    for_job = f" for {job}" if job else ""
    record("invitation", "ok", f"invited {interview.candidate_email} to “{test.title}”{for_job}{by}",
           organization_id=organization_id, interview=interview, invitation_id=invitation_id)
    return Sent(interview, True)


def status_of(interview: Interview) -> dict:
    """``test_status``'s answer (docs/providers/greenhouse.md#test-status): "complete" only with the
    report's address; the score as a percentage, the details as flat metadata."""
    invitation = assessments.get_invitation(interview.invitation_id) if interview.invitation_id else None
    if invitation is None:
        return {"partner_status": "sent"}
    result = assessments.get_result(interview.result_id) if interview.result_id else None
    if result is None:
        return {"partner_status": STATUS_WORDS.get(invitation.status, invitation.status)}
    try:
        report = assessments.report_url(result.id)
    except assessments.ReportLinkRevoked:
        # Never "complete" without the report's address (Greenhouse reports that as an error).
        return {"partner_status": "report link revoked"}
    metadata = {"Test": invitation.test_title, "Score": f"{result.score:g} / {result.max_score:g}",
                "Percentage": f"{result.percentage:.0f}%",
                "Completed At": f"{result.completed_at:%Y-%m-%d %H:%M} UTC" if result.completed_at else None}
    if result.passed is not None:
        metadata["Result"] = "Passed" if result.passed else "Failed"
        metadata["Pass Mark"] = f"{result.pass_mark}%"
    score = round(result.percentage, 2)
    return {"partner_status": "complete", "partner_profile_url": report,
            "partner_score": int(score) if score.is_integer() else score, "metadata": metadata}
