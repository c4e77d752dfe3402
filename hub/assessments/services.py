"""WeCP's assessment domain as integrations see it: invite, complete and grade, links, expire.

The narrow interface plugins use: functions that take ids or plain values and return plain
values (``TestInfo``, ``InvitationInfo``, ``ResultInfo``), and the signals of
``hub.assessments.signals``. Plugins never import the domain's models.

Functions work inside the caller's transaction and do not commit (a job commits once, at its
end; a view commits before it answers), except where a candidate's own action must be on
record at once (``start_invitation``, ``complete_invitation``). Each is safe to call again with
the same arguments (retried jobs, duplicate webhooks).
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, render_template
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..jobs import job
from ..mail import OutboundEmail, email_by_key, queue_email
from ..models import utcnow
from ..outbox import PENDING, SKIPPED
from ..plugin import PeriodicJob
from .models import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    INVITED,
    STARTED,
    AssessmentTest,
    Invitation,
    Result,
    hash_token,
    new_link_token,
)
from .signals import (
    invitation_cancelled,
    invitation_completed,
    invitation_expired,
    invitation_started,
    result_regraded,
)

log = logging.getLogger("hub.assessments")

#: One address, nothing else: no spaces, line breaks (header injection) or display-name syntax.
_EMAIL = re.compile(r"[^@\s<>\",;:()\[\]\\\x00-\x1f\x7f]+@[^@\s<>\",;:()\[\]\\\x00-\x1f\x7f]+")

#: Extra time after the time limit before a submission is refused (slow networks, clock skew).
GRACE = timedelta(minutes=2)



class InvitationError(Exception):
    """The invitation cannot do what was asked; ``reason`` names why, for pages and callers."""

    reason = "invalid"


class InvitationNotFound(InvitationError):
    reason = "not_found"


class InvitationExpired(InvitationError):
    """The deadline to start passed, or (``time_up``) the time limit ran out before submitting."""

    reason = "expired"

    def __init__(self, message: str = "", time_up: bool = False):
        super().__init__(message)
        self.time_up = time_up


class InvitationUsed(InvitationError):
    reason = "used"


class InvitationCancelled(InvitationError):
    """Withdrawn before the candidate started (``cancel_invitation``)."""

    reason = "cancelled"


class InvitationNotStarted(InvitationError):
    reason = "not_started"


class ReportLinkRevoked(Exception):
    """An admin revoked the result's report link (and has not issued a new one)."""


# ---------------------------------------------------------------------------------------------
# Invitations


#: Unicode categories no address holds: controls, format characters (zero-width spaces and
#: joiners, bidi overrides that make ``a@\u202eevil.example`` read backwards on a page),
#: surrogates, private use, unassigned, and every kind of space or line separator.
_NOT_IN_AN_ADDRESS = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


def valid_email(email: str) -> bool:
    """One address WeCP can send to: no spaces, line breaks, lists or display-name syntax, no
    invisible, bidi or format characters, no full-width or other compatibility forms (``ａdmin``
    shows as ``admin``: NFKC must leave the address as it is), and a domain IDNA can encode.
    Letters of any script stay allowed (``josé@example.com``)."""
    if not isinstance(email, str) or len(email) > 320 or _EMAIL.fullmatch(email) is None:
        return False
    if any(unicodedata.category(c) in _NOT_IN_AN_ADDRESS for c in email):
        return False
    if unicodedata.normalize("NFKC", email) != email:
        return False
    domain = email.rpartition("@")[2]
    try:
        encoded = domain.encode("idna")
    except UnicodeError:  # an empty label (a..b), a label over 63 characters, a bad character
        return False
    return "." in domain.strip(".") and len(encoded) <= 253


def create_invitation(test_id: int, *, name: str, email: str, source: str,
                      source_ref: str | None, idempotency_key: str,
                      job_title: str | None = None) -> tuple[Invitation, bool]:
    """Invite a candidate to a test and queue the invitation email; once per ``idempotency_key``.

    Returns ``(invitation, created)``. While an invitation for the key is live (invited,
    started or completed) it is returned with ``created=False``; once it expired or was
    cancelled, a fresh one is created (its ``generation`` is one higher). Concurrent calls with one key are settled by the
    unique ``(idempotency_key, generation)``: one inserts, the others return its row. Make the
    key unique across organizations, e.g. ``<plugin key>:<org id>:<candidate>:<test id>``.
    Raises ``LookupError`` for an unknown test and ``ValueError`` for a missing email.
    """
    email = (email or "").strip()
    if not valid_email(email):
        raise ValueError("a candidate email address is required")
    if not idempotency_key or len(idempotency_key) > 200:
        raise ValueError("idempotency_key must have 1 to 200 characters")
    for _ in range(5):
        test = db.session.get(AssessmentTest, test_id)
        if test is None:
            raise LookupError(f"no test {test_id}")
        latest = db.session.scalar(db.select(Invitation).filter_by(idempotency_key=idempotency_key)
                                   .order_by(Invitation.generation.desc()).limit(1))
        if latest is not None and latest.status != CANCELLED and not latest.is_expired():
            if latest.status == INVITED:
                _queue_invitation_email(latest)  # no-op once queued; heals a crash before queueing
            return latest, False
        now = utcnow()
        if latest is not None and latest.status != EXPIRED:
            _mark_expired(latest.id, now)
        invitation = Invitation(
            organization_id=test.organization_id, test_id=test.id,
            candidate_name=(name or "").strip()[:200], candidate_email=email,
            source=source, source_ref=source_ref, idempotency_key=idempotency_key,
            job_title=" ".join((job_title or "").split())[:300] or None,
            generation=0 if latest is None else latest.generation + 1,
            status=INVITED, created_at=now, expires_at=now + timedelta(days=test.valid_days))
        token = new_link_token()
        invitation.token_hash = hash_token(token)
        invitation.token = token
        try:
            # A savepoint: a concurrent call that inserted this generation first rolls back only
            # this insert, never the caller's own rows (its claims, its tags).
            with db.session.begin_nested():
                db.session.add(invitation)
        except IntegrityError:
            continue
        log.info("hub.assessments.invited invitation=%s test=%s source=%s",
                 invitation.id, test.id, source)
        _queue_invitation_email(invitation)
        return invitation, True
    raise RuntimeError(f"could not settle the invitation for key {idempotency_key!r}")


def invitation_email(invitation_id: str):
    """The invitation's ``OutboundEmail`` (``status``, ``error``), or ``None`` if not queued."""
    return email_by_key(f"invitation:{invitation_id}")


class ResendRefused(ValueError):
    """Sending the invitation again now would pass a resend limit; the text says which and when."""


def resend_limits(config) -> tuple[int, int, int]:
    """(seconds between two resends of one invitation, resends of one invitation a day, resends
    in one organization an hour): the page states them beside the button."""
    return (config["HUB_RESEND_INTERVAL_SECONDS"], config["HUB_RESENDS_PER_INVITATION_PER_DAY"],
            config["HUB_RESENDS_PER_ORGANIZATION_PER_HOUR"])


def resend_invitation(invitation_id: str) -> None:
    """Email a live invitation again (same link), within the resend limits.

    One member clicking could queue dozens of emails to one candidate (issue #39, 9). The limits
    are read from the emails already queued (the database every web process shares), and a
    resend's key names its interval, so two clicks at once in one interval queue one email.
    Raises ``ResendRefused`` past a limit, ``ValueError`` for an invitation that is not open.
    """
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None or invitation.status not in (INVITED, STARTED) or invitation.is_expired():
        raise ValueError("Only an open invitation (not completed or expired) can be sent again.")
    interval, per_day, per_hour = resend_limits(current_app.config)
    now = utcnow()
    resends = OutboundEmail.idempotency_key.startswith(f"invitation:{invitation.id}:resend:")
    recent = db.session.scalars(db.select(OutboundEmail.created_at).where(
        resends, OutboundEmail.created_at >= now - timedelta(days=1))
        .order_by(OutboundEmail.created_at.desc())).all()
    if recent and recent[0] > now - timedelta(seconds=interval):
        after = recent[0] + timedelta(seconds=interval)
        raise ResendRefused(f"This invitation was sent again at {recent[0]:%H:%M} UTC; it can be sent again "
                            f"from {after:%H:%M} UTC (one resend every {interval // 60 or 1} minutes at most).")
    if len(recent) >= per_day:
        raise ResendRefused(f"This invitation was sent again {len(recent)} times in the last 24 hours, the most "
                            f"allowed; it can be sent again from {recent[-1] + timedelta(days=1):%H:%M} UTC.")
    in_org = db.session.scalar(db.select(sa.func.count(OutboundEmail.id)).where(
        OutboundEmail.organization_id == invitation.organization_id,
        OutboundEmail.idempotency_key.like("invitation:%:resend:%"),
        OutboundEmail.created_at >= now - timedelta(hours=1)))
    if in_org >= per_hour:
        raise ResendRefused(f"Your organization sent {in_org} invitations again in the last hour, the most "
                            "allowed; try again later.")
    # Two clicks at once both pass the checks above and make the same key: one email is queued.
    window = int((now - datetime(1970, 1, 1)).total_seconds() // max(1, interval))
    _queue_invitation_email(invitation, key_suffix=f":resend:{window}:{len(recent)}")


def _queue_invitation_email(invitation: Invitation, key_suffix: str = "", reminder: bool = False) -> None:
    test = invitation.test
    organization = invitation.organization
    employer = organization.sender_name
    context = {"invitation": invitation, "test": test, "url": invitation_url(invitation.id),
               "company": current_app.config["HUB_COMPANY_NAME"], "employer": employer,
               "job": invitation.job_title, "reply_to": organization.email_reply_to, "reminder": reminder}
    # Who is asking, and for which job, before anything else: the subject is what people read.
    for_job = f" for {invitation.job_title}" if invitation.job_title else ""
    queue_email(invitation.candidate_email,
                f"{'Reminder: ' if reminder else ''}{employer}: your assessment{for_job}, “{test.title}”",
                render_template("hub/mail/invitation.txt", **context),
                render_template("hub/mail/invitation.html", **context),
                idempotency_key=f"invitation:{invitation.id}{key_suffix}",
                organization_id=invitation.organization_id, from_name=employer,
                reply_to=organization.email_reply_to)


def invitation_by_token(token: str) -> Invitation | None:
    """The invitation of a candidate link, or ``None``; never another one."""
    if not token or len(token) > 200:
        return None
    return db.session.scalar(db.select(Invitation).filter_by(token_hash=hash_token(token)))


def invitation_url(invitation_id: str) -> str:
    """The absolute candidate link of an invitation (``HUB_BASE_URL``/t/<token>)."""
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None:
        raise LookupError(f"no invitation {invitation_id}")
    return f"{current_app.config['HUB_BASE_URL']}/t/{invitation.token}"


def start_invitation(token: str) -> Invitation:
    """The candidate presses Start: the clock begins. Starting twice is harmless."""
    invitation = invitation_by_token(token)
    if invitation is None:
        raise InvitationNotFound()
    now = utcnow()
    submit_by = now + timedelta(minutes=invitation.test.time_limit_minutes) + GRACE
    started = db.session.execute(
        sa.update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.status == INVITED,
               Invitation.expires_at > now)
        .values(status=STARTED, started_at=now, submit_by=submit_by)).rowcount
    if started:
        invitation_started.send(current_app._get_current_object(), invitation_id=invitation.id)
    db.session.commit()
    db.session.refresh(invitation)
    if started or invitation.status == STARTED and not invitation.is_expired(now):
        return invitation
    _raise_for(invitation, now)


def complete_invitation(token: str, answers: dict) -> Result:
    """Grade the candidate's ``answers`` (``{question_id: [option index, ...]}``) exactly once.

    The first call stores the result, commits, then sends ``invitation_completed``. Later calls
    (a double submit, a retried request) return that same result and send nothing. A submission
    after the time limit plus ``GRACE`` is refused with ``InvitationExpired(time_up=True)``:
    the form posts all answers at once, so there is nothing partial worth grading.
    """
    invitation = invitation_by_token(token)
    if invitation is None:
        raise InvitationNotFound()
    if invitation.status == COMPLETED:
        return _result_of(invitation.id)
    now = utcnow()
    if invitation.status != STARTED or invitation.is_expired(now):
        if invitation.status == STARTED:
            _mark_expired(invitation.id, now)
            db.session.commit()
            raise InvitationExpired("the time limit is over", time_up=True)
        _raise_for(invitation, now)

    test = invitation.test
    graded = grade(test, answers)
    # The status change is the gate: of two concurrent submissions one updates the row, the
    # other waits for its lock, then finds it completed and returns the stored result.
    won = db.session.execute(
        sa.update(Invitation).where(Invitation.id == invitation.id, Invitation.status == STARTED)
        .values(status=COMPLETED, completed_at=now)).rowcount
    if not won:
        db.session.rollback()
        return _result_of(invitation.id)
    result = Result(organization_id=invitation.organization_id, invitation_id=invitation.id,
                    test_id=test.id, completed_at=now, pass_mark=test.pass_mark, **graded)
    result.issue_report_link()
    db.session.add(result)
    try:
        db.session.flush()
        # Inside the transaction: what receivers schedule (a note in the ATS) commits with the
        # result, or not at all.
        invitation_completed.send(current_app._get_current_object(), result_id=result.id,
                                  invitation_id=invitation.id)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return _result_of(invitation.id)
    log.info("hub.assessments.completed invitation=%s result=%s passed=%s",
             invitation.id, result.id, result.passed)
    return result


def regrade_result(result_id: str) -> bool:
    """Grade a result's stored answers again against the test as it is now (its answer key was
    corrected after the candidate took it). True when the score changed: the result is updated
    and ``result_regraded`` sent, in the caller's transaction (integrations schedule a correction
    with it); False when nothing changed, and nothing is sent."""
    result = db.session.get(Result, result_id)
    if result is None:
        raise LookupError(f"no result {result_id}")
    graded = grade(result.test, result.answers or {})
    previous = {"score": result.score, "percentage": result.percentage, "passed": result.passed}
    if (graded["score"], graded["max_score"], graded["passed"]) == (result.score, result.max_score, result.passed) \
            and graded["details"] == result.details:
        return False
    for key in ("details", "score", "max_score", "percentage", "passed"):
        setattr(result, key, graded[key])
    result.pass_mark = result.test.pass_mark  # what "passed" was judged against now
    db.session.flush()
    result_regraded.send(current_app._get_current_object(), result_id=result.id, previous=previous)
    log.info("hub.assessments.regraded result=%s", result.id)
    return True


def _result_of(invitation_id: str) -> Result:
    db.session.expire_all()
    return db.session.scalar(db.select(Result).filter_by(invitation_id=invitation_id))


def _raise_for(invitation: Invitation, now) -> None:
    if invitation.status == COMPLETED:
        raise InvitationUsed()
    if invitation.status == CANCELLED:
        raise InvitationCancelled()
    if invitation.is_expired(now):
        raise InvitationExpired(time_up=invitation.started_at is not None)
    raise InvitationNotStarted()


def _mark_expired(invitation_id: str, now) -> None:
    db.session.execute(sa.update(Invitation)
                       .where(Invitation.id == invitation_id,
                              Invitation.status.in_((INVITED, STARTED)))
                       .values(status=EXPIRED, expired_at=now))


@job("default", retry=False)
def expire_invitations() -> dict:
    """Periodic job: write down invitations whose start deadline or time limit has passed, and
    tell the integrations (``invitation_expired``, in this job's transaction)."""
    now = utcnow()
    expired = db.session.scalars(
        sa.update(Invitation)
        .where(sa.or_(sa.and_(Invitation.status == INVITED, Invitation.expires_at <= now),
                      sa.and_(Invitation.status == STARTED, Invitation.submit_by < now)))
        .values(status=EXPIRED, expired_at=now).returning(Invitation.id)
        .execution_options(synchronize_session=False)).all()
    for invitation_id in expired:
        invitation_expired.send(current_app._get_current_object(), invitation_id=invitation_id)
    if expired:
        log.info("hub.assessments.expired count=%s", len(expired))
    return {"expired": len(expired)}


def unstarted_invitations(organization_id: int, source: str, source_ref: str) -> list[str]:
    """Ids of the invitations of one candidate of ``source`` (e.g. the ATS's candidate id) that
    the candidate has not started and that are still open, oldest first."""
    return list(db.session.scalars(sa.select(Invitation.id).where(
        Invitation.organization_id == organization_id, Invitation.source == source,
        Invitation.source_ref == source_ref, Invitation.status == INVITED,
        Invitation.expires_at > utcnow()).order_by(Invitation.created_at)))


def cancel_invitation(invitation_id: str, reason: str) -> bool:
    """Withdraw an invitation the candidate has not started: its link then says so kindly, and
    its emails not sent yet are not sent. True when this call cancelled it; False when it was
    started, finished, expired or cancelled already (a candidate pressing Start at the same
    moment wins or loses on the one status change). In the caller's transaction."""
    now = utcnow()
    cancelled = db.session.execute(
        sa.update(Invitation).where(Invitation.id == invitation_id, Invitation.status == INVITED)
        .values(status=CANCELLED, cancelled_at=now).execution_options(synchronize_session=False)).rowcount
    if not cancelled:
        return False
    # Its invitation or reminder email still waiting to go out is not sent (a running send
    # finishes: the page then explains).
    db.session.execute(
        sa.update(OutboundEmail).where(OutboundEmail.idempotency_key.startswith(f"invitation:{invitation_id}"),
                                       OutboundEmail.status == PENDING)
        .values(status=SKIPPED, outcome="cancelled", summary="not sent: the invitation was cancelled",
                finished_at=now).execution_options(synchronize_session=False))
    log.info("hub.assessments.cancelled invitation=%s", invitation_id)
    invitation_cancelled.send(current_app._get_current_object(), invitation_id=invitation_id,
                              reason=(reason or "")[:200])
    return True


#: The reminder email's key: one per invitation.
REMINDER_SUFFIX = ":reminder"


def invitations_to_remind(organization_id: int, source: str, within: timedelta) -> list[str]:
    """Invitations of ``source`` not started whose start deadline is less than ``within`` away
    and that were not reminded yet. One sent with less time than that left is not reminded."""
    now = utcnow()
    reminded = sa.select(OutboundEmail.id).where(
        OutboundEmail.idempotency_key == sa.literal("invitation:") + Invitation.id + sa.literal(REMINDER_SUFFIX))
    return list(db.session.scalars(sa.select(Invitation.id).where(
        Invitation.organization_id == organization_id, Invitation.source == source,
        Invitation.status == INVITED, Invitation.expires_at > now, Invitation.expires_at <= now + within,
        Invitation.created_at < Invitation.expires_at - within, ~sa.exists(reminded))
        .order_by(Invitation.expires_at).limit(500)))


def remind_invitation(invitation_id: str) -> bool:
    """Queue the candidate's one reminder (the same link, the deadline ahead); False when there
    is nothing to remind of any more (started, done, expired)."""
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None or invitation.status != INVITED or invitation.is_expired():
        return False
    _queue_invitation_email(invitation, key_suffix=REMINDER_SUFFIX, reminder=True)
    return True


HUB_PERIODIC_JOBS = [PeriodicJob(expire_invitations, timedelta(minutes=10))]


# ---------------------------------------------------------------------------------------------
# Grading and reports


def normalise_answers(test: AssessmentTest, answers: dict) -> dict[str, list[int]]:
    """Keep only valid option indexes of the test's questions, keyed by question id as text."""
    clean = {}
    for question in test.questions:
        raw = answers.get(str(question.id), answers.get(question.id, []))
        if not isinstance(raw, (list, tuple)):
            raw = [raw]
        picked = set()
        for value in raw:
            try:
                index = int(value)
            except (TypeError, ValueError):
                continue
            if 0 <= index < len(question.options):
                picked.add(index)
        clean[str(question.id)] = sorted(picked)
    return clean


def grade(test: AssessmentTest, answers: dict) -> dict:
    """Score one point per question whose chosen options are exactly the correct ones."""
    clean = normalise_answers(test, answers)
    details, score = [], 0
    for question in test.questions:
        selected = clean[str(question.id)]
        correct = sorted(question.correct)
        is_correct = selected == correct
        score += is_correct
        details.append({"question_id": question.id, "text": question.text, "kind": question.kind,
                        "options": list(question.options), "correct": correct,
                        "selected": selected, "is_correct": is_correct})
    max_score = len(test.questions)
    percentage = round(100.0 * score / max_score, 2) if max_score else 0.0
    # Compare in integers so 2 of 3 against a 67 % mark is not decided by float rounding.
    passed = max_score > 0 and score * 100 >= test.pass_mark * max_score
    return {"answers": clean, "details": details, "score": score, "max_score": max_score,
            "percentage": percentage, "passed": passed}


def report_url(result_id: str) -> str:
    """The absolute link to the result's detailed report (``HUB_BASE_URL``/r/<token>).

    Raises ``ReportLinkRevoked`` after an admin revoked it, ``LookupError`` for an unknown id.
    """
    result = db.session.get(Result, result_id)
    if result is None:
        raise LookupError(f"no result {result_id}")
    if result.report_token_hash is None:
        raise ReportLinkRevoked(f"the report link of result {result_id} was revoked")
    return f"{current_app.config['HUB_BASE_URL']}/r/{result.report_token}"


def result_by_report_token(token: str) -> Result | None:
    if not token or len(token) > 200:
        return None
    return db.session.scalar(db.select(Result).filter_by(report_token_hash=hash_token(token)))


# ---------------------------------------------------------------------------------------------
# Tests (the UI and the API share this)


def save_test(organization_id: int, data: dict, test: AssessmentTest | None = None,
              user_id: int | None = None) -> AssessmentTest:
    """Create or update a test from data validated by ``AssessmentTestSchema`` (not committed).

    Questions are updated in place by position, so a candidate who is mid-test keeps answering
    the same question ids.
    """
    from .models import AssessmentQuestion

    if test is None:
        test = AssessmentTest(organization_id=organization_id, created_by_id=user_id)
        db.session.add(test)
    for field in ("title", "description", "pass_mark", "time_limit_minutes", "valid_days"):
        setattr(test, field, data[field])
    existing = list(test.questions)
    for position, q in enumerate(data["questions"]):
        question = existing[position] if position < len(existing) else AssessmentQuestion(
            organization_id=organization_id)
        question.position = position
        question.text = q["text"]
        question.kind = q["kind"]
        question.options = list(q["options"])
        question.correct = sorted(q["correct"])
        if position >= len(existing):
            test.questions.append(question)
    for question in existing[len(data["questions"]):]:
        test.questions.remove(question)
    return test


# ---------------------------------------------------------------------------------------------
# Plain values for integrations


@dataclass(frozen=True)
class TestInfo:
    id: int
    organization_id: int
    title: str
    pass_mark: int


@dataclass(frozen=True)
class InvitationInfo:
    id: str
    organization_id: int
    test_id: int
    test_title: str
    candidate_name: str
    candidate_email: str
    #: invited, started, completed or expired (expired in fact, even before it is written down).
    status: str
    source: str
    source_ref: str | None
    created_at: datetime
    #: The invitation email: its status in words (queued, sending, sent, failed) and last error.
    email_status: str | None
    email_error: str | None


@dataclass(frozen=True)
class ResultInfo:
    id: str
    organization_id: int
    invitation_id: str
    test_id: int
    test_title: str
    candidate_name: str
    source: str
    source_ref: str | None
    score: int
    max_score: int
    percentage: float
    pass_mark: int
    passed: bool
    completed_at: datetime


def _test_info(test: AssessmentTest) -> TestInfo:
    return TestInfo(id=test.id, organization_id=test.organization_id, title=test.title,
                    pass_mark=test.pass_mark)


def get_test(test_id: int, organization_id: int | None = None) -> TestInfo | None:
    """The test, or None (also when it belongs to another organization than the one given)."""
    test = db.session.get(AssessmentTest, test_id)
    if test is None or organization_id is not None and test.organization_id != organization_id:
        return None
    return _test_info(test)


def list_tests(organization_id: int) -> list[TestInfo]:
    """The organization's tests, by title."""
    return [_test_info(t) for t in db.session.scalars(
        db.select(AssessmentTest).filter_by(organization_id=organization_id).order_by(AssessmentTest.title))]


def open_invitation_count(organization_id: int, source: str, test_id: int | None = None,
                          source_refs=None) -> int:
    """Invitations from ``source`` (a plugin key), to ``test_id`` if given, for one of
    ``source_refs`` if given (a list or a subquery of the source's own ids), not yet completed
    and not expired."""
    query = db.select(db.func.count(Invitation.id)).where(
        Invitation.organization_id == organization_id, Invitation.source == source,
        Invitation.status.in_((INVITED, STARTED)), Invitation.expires_at > utcnow())
    if test_id is not None:
        query = query.where(Invitation.test_id == test_id)
    if source_refs is not None:
        query = query.where(Invitation.source_ref.in_(source_refs))
    return db.session.scalar(query) or 0


def invitation_email_sent(organization_id: int, source: str) -> bool:
    """Has any invitation from ``source`` (a plugin key) had its email sent?"""
    from ..mail import DONE, OutboundEmail

    return db.session.scalar(
        db.select(OutboundEmail.id)
        .join(Invitation, OutboundEmail.idempotency_key == sa.literal("invitation:") + Invitation.id)
        .where(Invitation.organization_id == organization_id, Invitation.source == source,
               OutboundEmail.status == DONE).limit(1)) is not None


def get_invitation(invitation_id: str) -> InvitationInfo | None:
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None:
        return None
    email = email_by_key(f"invitation:{invitation.id}")
    return InvitationInfo(
        id=invitation.id, organization_id=invitation.organization_id, test_id=invitation.test_id,
        test_title=invitation.test.title, candidate_name=invitation.candidate_name,
        candidate_email=invitation.candidate_email, status=invitation.display_status(),
        source=invitation.source, source_ref=invitation.source_ref, created_at=invitation.created_at,
        email_status=email.status_label if email else None, email_error=email.error if email else None)


def get_result(result_id: str) -> ResultInfo | None:
    result = db.session.get(Result, result_id)
    if result is None:
        return None
    invitation = result.invitation
    return ResultInfo(
        id=result.id, organization_id=result.organization_id, invitation_id=invitation.id,
        test_id=result.test_id, test_title=invitation.test.title,
        candidate_name=invitation.candidate_name, source=invitation.source,
        source_ref=invitation.source_ref, score=result.score, max_score=result.max_score,
        percentage=result.percentage, pass_mark=result.pass_mark, passed=result.passed,
        completed_at=result.completed_at)


def invite(test_id: int, *, name: str, email: str, source: str, source_ref: str | None,
           idempotency_key: str, job_title: str | None = None) -> tuple[str, bool]:
    """``create_invitation`` for integrations: the invitation's id, and whether this call made it.
    ``job_title``: the job the candidate applied for (emails and pages name it)."""
    invitation, created = create_invitation(test_id, name=name, email=email, source=source,
                                            source_ref=source_ref, idempotency_key=idempotency_key,
                                            job_title=job_title)
    return invitation.id, created
