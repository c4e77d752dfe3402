"""The Assessment Partner API: the four endpoints Greenhouse calls, at ``/partners/wecp_greenhouse/``.

The hub has already checked the customer's key (HTTP Basic, the key as user name:
docs/providers/greenhouse.md#assessment-auth), found its organization (``caller()``), limited the
rate and the body, and answers every error as ``{"error": …}`` (``Plugin.partner_error``).
"""
from __future__ import annotations

import logging

from flask import Blueprint, abort, jsonify, request
from marshmallow import ValidationError

from hub.assessments import services as assessments
from hub.extensions import db
from hub.models import Connection, utcnow
from hub.partners import caller

from .addresses import on_greenhouse
from .models import Interview, record
from .schemas import INTERVIEW_ID, ResponseErrorSchema, SendTestSchema, in_words
from .sending import send, status_of

log = logging.getLogger("wecp_greenhouse")

bp = Blueprint("wecp_greenhouse_partner", __name__)


def _body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="the body must be a JSON object")
    return body


@bp.get("/list_tests")
def list_tests():
    """The organization's tests (docs/providers/greenhouse.md#list-tests): a top-level array."""
    who = caller()
    _seen(who.connection_id, "listed_at")
    tests = assessments.list_tests(who.organization_id)
    return jsonify([{"partner_test_id": str(t.id), "partner_test_name": t.title} for t in tests])


@bp.post("/send_test")
def send_test():
    """Send a test to a candidate, once per take-home test however often Greenhouse asks
    (docs/providers/greenhouse.md#send-test): ``{"partner_interview_id": "…"}``. A refused send
    is an activity line too: the recruiter sees Greenhouse's error, the admin WeCP's reason."""
    who = caller()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        _refuse_send(who, 400, "the body must be a JSON object", body)
    try:
        data = SendTestSchema().load(body)
    except ValidationError as exc:
        _refuse_send(who, 422, in_words(exc), body)
    test = assessments.get_test(int(data["partner_test_id"]), who.organization_id)
    if test is None:
        _refuse_send(who, 404, "no such test for this key: list_tests names the tests it may send", body)
    if data.get("url") and not on_greenhouse(data["url"]):
        _refuse_send(who, 422, "url: not an address on Greenhouse's host", body)
    sent = send(who.organization_id, who.connection_id, test, data)
    db.session.commit()
    return jsonify({"partner_interview_id": sent.interview.id})


def _refuse_send(who, status: int, reason: str, body) -> None:
    candidate = body.get("candidate") if isinstance(body, dict) else None
    email = candidate.get("email") if isinstance(candidate, dict) else None
    to = f" to {email[:320]}" if isinstance(email, str) and email.strip() else ""
    record("invitation", "failed", f"Greenhouse asked WeCP to send a test{to}; refused, nothing sent: {reason}. "
           "Greenhouse shows the recruiter an error; Send Test again once it is fixed.",
           organization_id=who.organization_id)
    db.session.commit()
    abort(status, description=reason)


@bp.get("/test_status")
def test_status():
    """Where the test stands (docs/providers/greenhouse.md#test-status); 404 for an id that is
    not one of this key's organization."""
    ident = request.args.get("partner_interview_id", "")
    if not ident:
        abort(400, description="partner_interview_id is required")
    interview = db.session.scalar(db.select(Interview).filter_by(
        id=ident, organization_id=caller().organization_id)) if INTERVIEW_ID.fullmatch(ident) else None
    if interview is None:
        abort(404, description="no such partner_interview_id for this key")
    return jsonify(status_of(interview))


@bp.post("/response_error")
def response_error():
    """Greenhouse could not use one of WeCP's answers (docs/providers/greenhouse.md#response-error):
    stored as an activity line the admin reads, and always answered 200 once it is stored."""
    who = caller()
    try:
        data = ResponseErrorSchema().load(_body())
    except ValidationError as exc:
        abort(422, description=in_words(exc))
    interview = None
    if data.get("partner_interview_id") and INTERVIEW_ID.fullmatch(data["partner_interview_id"]):
        interview = db.session.scalar(db.select(Interview).filter_by(
            id=data["partner_interview_id"], organization_id=who.organization_id))
    call = data.get("api_call") or "a call"
    errors = "; ".join(e.strip() for e in data.get("errors") or [] if e.strip()) or "no details given"
    about = "" if interview is not None else \
        f" (test {data['partner_test_name'] or data['partner_test_id']})" if data.get("partner_test_name") \
        or data.get("partner_test_id") else ""
    record("greenhouse_error", "failed", f"Greenhouse could not use WeCP's answer to {call}{about}: {errors}",
           organization_id=who.organization_id, interview=interview)
    db.session.commit()
    # The operators' signal: the call's name only (the errors may quote a candidate).
    log.warning("wecp_greenhouse.response_error organization=%s api_call=%s", who.organization_id,
                call if call in ("list_tests", "send_test", "test_status") else "other")
    return jsonify({"status": 200})


def _seen(connection_id: str, what: str) -> None:
    """Note the first time Greenhouse made a call (the card's checklist), with one write ever."""
    connection = db.session.get(Connection, connection_id)
    if not (connection.data or {}).get(what):
        connection.data = {**(connection.data or {}), what: utcnow().isoformat()}
        db.session.commit()
