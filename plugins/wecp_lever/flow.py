"""The WeCP–Lever flow: a stage change invites the candidate; a completed test becomes a note.

Every write to Lever (a note, tags, a stage move) is durable work (``hub.outbox``): a row
stored in the transaction of what asks for it, done once by its job below. Each job runs in one
transaction and returns a typed outcome; the activity log gets its words.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

from flask import current_app
from marshmallow import ValidationError
from redis.exceptions import LockError

from hub.activity import ActivityLine
from hub.assessments import services as assessments
from hub.extensions import db, get_redis
from hub.inbox import WebhookDelivery
from hub.jobs import job
from hub.models import Connection, utcnow
from hub.outbox import Refused, durable, schedule_once
from hub.outcomes import Outcome, Several, Skipped
from hub.plugin import ConnectionUnusable
from hub.settings import get_setting

from . import activity, cache
from .lever import LEVER_ID, LeverClient, NotFound, admission, plan_calls
from .models import Note, PostingLink, ReconcileCursor, StageChange, StageMove, Tag, record
from .schemas import ArchiveChangeDataSchema, StageChangeDataSchema
from .webhooks import SUPPORTED_EVENTS

ARCHIVE_CHANGE = "candidateArchiveChange"

log = logging.getLogger("wecp_lever")

KEY = "wecp_lever"
TAG_INVITED = "WeCP: invited"
TAG_COMPLETED = "WeCP: completed"
TAG_EXPIRED = "WeCP: expired"
TAG_STARTED = "WeCP: started"
TAG_REVIEW = "WeCP: needs review"
TAG_PASSED = "WeCP: passed"
TAG_FAILED = "WeCP: failed"
#: Where the admin switches Lever's stage-change webhook on (docs/providers/lever.md#webhooks).
SWITCH_STAGE_CHANGE_ON = ("In Lever, open Settings › Integrations and API › Webhooks and switch "
                          "“Candidate Stage Change” on.")

#: Printed in every result note, followed by the report URL: how a re-run finds its own note.
REPORT_LINE = "View a detailed report on WeCP: "


# --- outcomes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Withdrawn(Outcome):
    code: ClassVar[str] = "withdrawn"
    count: int = 0
    why: str = ""

    def describe(self) -> str:
        return f"{self.count} invitation(s) withdrawn: {self.why}" if self.count else \
            f"nothing to withdraw ({self.why}; the invitations were started or withdrawn already)"


@dataclass(frozen=True)
class Invited(Outcome):
    code: ClassVar[str] = "invited"
    test_id: int = 0
    test_title: str = ""

    def describe(self) -> str:
        return f"invited to “{self.test_title}”"


@dataclass(frozen=True)
class AlreadyInvited(Outcome):
    """An invitation for this candidate and test is still valid: nothing sent again."""

    code: ClassVar[str] = "already_invited"
    test_id: int = 0
    test_title: str = ""

    def describe(self) -> str:
        return f"already invited to “{self.test_title}”"


@dataclass(frozen=True)
class AlreadyHandled(Outcome):
    """This very move into the stage was acted on before (a duplicate webhook, reconciliation)."""

    code: ClassVar[str] = "already_handled"
    test_id: int = 0
    test_title: str = ""

    def describe(self) -> str:
        return f"already handled this move for “{self.test_title}”"


@dataclass(frozen=True)
class NotePosted(Outcome):
    code: ClassVar[str] = "note_posted"
    role: str = ""
    found: bool = False

    def describe(self) -> str:
        if self.found:
            return "found in Lever (an earlier run posted it)"
        return f"posted as the posting's {self.role.replace('_', ' ')}"


@dataclass(frozen=True)
class Tagged(Outcome):
    code: ClassVar[str] = "tagged"
    count: int = 0


@dataclass(frozen=True)
class Moved(Outcome):
    code: ClassVar[str] = "moved"
    already: bool = False

    def describe(self) -> str:
        return "was already in the stage" if self.already else "moved to the stage"


@dataclass(frozen=True)
class Reconciled(Outcome):
    code: ClassVar[str] = "reconciled"
    checked: int = 0
    invited: int = 0

    def describe(self) -> str:
        return f"checked {self.checked} opportunities, invited {self.invited}"


class NoActiveUser(Refused):
    """No active Lever user to write as: only reconnecting (as an active admin) helps."""


def skip(reason: str, message: str) -> Skipped:
    return Skipped(reason=reason, message=message)


# --- stage change → invitation -----------------------------------------------------------------

def handle_delivery(delivery, connection: Connection) -> Outcome:
    """The Lever webhook source's handler: act on one stored delivery (``WebhookSource.handle``)."""
    if delivery.event not in SUPPORTED_EVENTS:
        return skip("unsupported_event", f"unsupported event {delivery.event}")
    archive = delivery.event == ARCHIVE_CHANGE
    try:
        data = (ArchiveChangeDataSchema() if archive else StageChangeDataSchema()).load(
            (delivery.payload or {}).get("data") or {})
    except ValidationError as exc:
        # Lever signs only token + triggeredAt, not data (docs/providers/lever.md#webhooks): a
        # signed delivery can still carry anything there. Refused, never retried, never a URL.
        fields_ = ", ".join(f"{name} {' '.join(map(str, problems))}" for name, problems in sorted(exc.messages.items()))
        message = f"refused: {fields_} (the delivery is kept; nothing was called)"
        # In the activity log too: a delivery Lever signed but nobody could act on is never silent.
        record("webhook", "skipped", message, organization_id=connection.organization_id,
               delivery_id=delivery.id)
        return skip("invalid_data", message)
    if archive:
        return process_archive_change(connection, data["opportunity_id"], delivery_id=delivery.id)
    return process_stage_change(connection, data["opportunity_id"], data["to_stage_id"],
                                via="webhook", delivery_id=delivery.id)


def _links(organization_id: int, stage_id: str) -> list[PostingLink]:
    """The organization's links to this stage, of every posting (a stage has few)."""
    query = db.select(PostingLink).filter_by(organization_id=organization_id, stage_id=stage_id)
    return list(db.session.scalars(query.order_by(PostingLink.id)))


def process_stage_change(connection: Connection, opportunity_id: str, stage_id: str, *, via: str,
                         delivery_id: int | None = None, opportunity: dict | None = None) -> Outcome:
    """Invite the candidate to every test linked to their posting and new stage, once.

    Lever signs only ``token + triggeredAt``, not ``data`` (docs/providers/lever.md#webhooks):
    the opportunity is re-read from Lever (unless reconciliation just read it) and only its
    current stage and posting count.
    """
    org_id = connection.organization_id
    # A candidate with a test not started yet may have left its posting: checked on each move.
    waiting = assessments.unstarted_invitations(org_id, KEY, opportunity_id) if delivery_id is not None else []
    # Most stage changes concern no linked stage: answer those without calling Lever at all.
    if not _links(org_id, stage_id) and not waiting:
        return skip("no_linked_test", f"no test is linked to stage {stage_id}")
    if not connection.usable:
        raise ConnectionUnusable(connection.id, "the Lever connection is not active")
    if opportunity is None:
        try:
            opportunity = LeverClient(connection.id).get_opportunity(opportunity_id)
        except NotFound:
            if waiting:
                _withdraw(org_id, {"id": opportunity_id}, waiting, "the candidate was deleted in Lever",
                          delivery_id)
            return _skip(org_id, {"id": opportunity_id}, "opportunity_gone",
                         "the opportunity no longer exists in Lever", delivery_id)
    opp = opportunity
    withdrawn = _withdraw_if_gone(org_id, opp, waiting, delivery_id) if waiting else None
    # Read again after the Lever call: a link removed meanwhile no longer invites.
    stage_links = _links(org_id, stage_id)
    if not stage_links:
        return withdrawn or skip("no_linked_test", f"no test is linked to stage {stage_id}")
    if opp.get("stage") != stage_id:
        return _skip(org_id, opp, "not_in_stage", f"no longer in that stage (now in {opp.get('stage')})",
                     delivery_id)
    application = _application(opp)
    if application is None:
        return _skip(org_id, opp, "no_posting", "the opportunity has no job posting", delivery_id)
    links = [link for link in stage_links if link.posting_id == application["posting"]]
    if not links:
        return _skip(org_id, opp, "no_linked_test", "no test is linked to this posting and stage",
                     delivery_id)
    outcomes = tuple(_invite(connection, opp, application, link, via, delivery_id) for link in links)
    return outcomes[0] if len(outcomes) == 1 else Several(parts=outcomes)


def process_archive_change(connection: Connection, opportunity_id: str, *, delivery_id: int) -> Outcome:
    """Lever says a candidate was archived or unarchived: withdraw their invitations not started
    yet if Lever confirms they are archived (``data`` is not signed: docs/providers/lever.md#webhooks).

    Unarchiving brings nothing back: moving the candidate into the linked stage again invites
    them anew.
    """
    org_id = connection.organization_id
    waiting = assessments.unstarted_invitations(org_id, KEY, opportunity_id)
    if not waiting:
        # Most archived candidates were never invited: nothing to read from Lever.
        return skip("nothing_to_withdraw", "no invitation of this candidate waits to be started")
    if not connection.usable:
        raise ConnectionUnusable(connection.id, "the Lever connection is not active")
    try:
        opp = LeverClient(connection.id).get_opportunity(opportunity_id)
    except NotFound:
        return _withdraw(org_id, {"id": opportunity_id}, waiting, "the candidate was deleted in Lever",
                         delivery_id)
    return _withdraw_if_gone(org_id, opp, waiting, delivery_id) or _skip(
        org_id, opp, "still_open", "archive change: the candidate is not archived in Lever now, so their "
        "invitation stays open", delivery_id)


def _withdraw_if_gone(org_id: int, opp: dict, waiting: list[str], delivery_id) -> Outcome | None:
    """Withdraw the waiting invitations whose candidate Lever shows archived, or no longer in the
    posting they were invited from; None when each still stands."""
    # docs/providers/lever.md#archive: archived (hired included) is a non-null ``archived``;
    # leaving a posting has no event of its own and shows as another or no application posting.
    if opp.get("archived"):
        return _withdraw(org_id, opp, waiting, "the candidate was archived in Lever", delivery_id)
    application = _application(opp)
    posting = application["posting"] if application else None
    gone = [invitation_id for invitation_id in waiting
            if (invited_from := _invited_posting(org_id, opp["id"], invitation_id)) and invited_from != posting]
    if gone:
        return _withdraw(org_id, opp, gone, "the candidate left the job posting in Lever", delivery_id)
    return None


def _invited_posting(org_id: int, opportunity_id: str, invitation_id: str) -> str | None:
    """The posting the move that invited the candidate was for (None: not recorded)."""
    invitation = assessments.get_invitation(invitation_id)
    return db.session.scalar(
        db.select(StageChange.posting_id).filter_by(organization_id=org_id, opportunity_id=opportunity_id,
                                                    test_id=invitation.test_id)
        .order_by(StageChange.id.desc()).limit(1))


def _withdraw(org_id: int, opp: dict, invitation_ids: list[str], why: str, delivery_id) -> Outcome:
    """Cancel each invitation (the candidate has not started it); the activity log says so
    (``on_invitation_cancelled``). Safe to repeat: only the first cancels."""
    cancelled = sum(assessments.cancel_invitation(invitation_id, why) for invitation_id in invitation_ids)
    return Withdrawn(count=cancelled, why=why)


def _application(opp: dict) -> dict | None:
    # docs/providers/lever.md#opportunities: an opportunity has at most one application; with
    # expand=applications it is an object carrying posting and postingOwner.
    for app in opp.get("applications") or []:
        if isinstance(app, dict) and isinstance(app.get("posting"), str) and LEVER_ID.fullmatch(app["posting"]):
            return app
    return None


def _moved_at(opp: dict, stage_id: str) -> int:
    """When Lever recorded the opportunity's latest move into ``stage_id`` (epoch ms)."""
    times = [c.get("updatedAt") or 0 for c in opp.get("stageChanges") or []
             if isinstance(c, dict) and c.get("toStageId") == stage_id]
    return max(times) if times else int(opp.get("lastAdvancedAt") or opp.get("updatedAt") or 0)


def _claim(row) -> bool:
    """Insert a row whose unique key marks work as taken; False when it was taken before."""
    from sqlalchemy.exc import IntegrityError

    try:
        with db.session.begin_nested():
            db.session.add(row)
        return True
    except IntegrityError:
        return False


def _emails(opp: dict) -> tuple[str | None, bool]:
    """The first usable email of the opportunity, and whether it has any email at all."""
    emails = [e for e in opp.get("emails") or [] if isinstance(e, str) and e.strip()]
    for email in emails:
        if assessments.valid_email(email.strip()):
            return email.strip(), True
    return None, bool(emails)


def _invite(connection: Connection, opp: dict, application: dict, link: PostingLink, via: str,
            delivery_id: int | None) -> Outcome:
    org_id = connection.organization_id
    name = opp.get("name") or ""
    test = assessments.get_test(link.test_id)
    if (application.get("createdAt") or 0) < link.linked_at_ms:
        # The product's rule: candidates already in the posting before the link are not affected.
        return _skip(org_id, opp, "before_link", f"was in the posting before “{test.title}” was linked",
                     delivery_id)
    if opp.get("archived") or application.get("archived"):
        return _skip(org_id, opp, "archived", "the opportunity is archived", delivery_id)
    # One move into the stage counts once per test, however often (and by whichever path) we
    # hear of it; a later move out and back in is a new move with a new time.
    claim_key = f"{connection.id}:{opp['id']}:{link.stage_id}:{_moved_at(opp, link.stage_id)}:{link.test_id}"
    if not _claim(StageChange(organization_id=org_id, opportunity_id=opp["id"], stage_id=link.stage_id,
                              posting_id=link.posting_id, posting_text=link.posting_text[:300],
                              stage_text=link.stage_text[:200], test_id=link.test_id, via=via, key=claim_key)):
        return AlreadyHandled(test_id=test.id, test_title=test.title)
    email, has_any = _emails(opp)
    if email is None:
        reason = Note.INVALID_EMAIL if has_any else Note.NO_EMAIL
        schedule_once(post_note, Note(organization_id=org_id, connection_id=connection.id,
                                      key=f"no-email:{opp['id']}:{link.test_id}", reason=reason,
                                      test_id=link.test_id, opportunity_id=opp["id"]))
        what = "has no usable email address (it is malformed)" if has_any else "has no email address"
        return _skip(org_id, opp, reason, f"not invited to “{test.title}”: the Lever profile {what}; "
                     f"a note in Lever says what to fix", delivery_id, always=True)
    invitation_id, created = assessments.invite(
        link.test_id, name=name, email=email, source=KEY, source_ref=opp["id"],
        job_title=link.posting_text or None, idempotency_key=f"{KEY}:{org_id}:{opp['id']}:{link.test_id}")
    if not created:
        record("invitation", "skipped", f"already invited to “{test.title}” (still valid)",
               organization_id=org_id, opportunity_id=opp["id"], candidate_name=name,
               delivery_id=delivery_id, invitation_id=invitation_id)
        return AlreadyInvited(test_id=test.id, test_title=test.title)
    if get_setting(org_id, KEY, "tag_invited"):
        # The author is chosen when the tag is written: a Lever outage now must not cost the
        # invitation, and the application's ids are all the choice needs.
        schedule_once(tag_opportunity, Tag(
            organization_id=org_id, connection_id=connection.id, key=f"invited:{claim_key}",
            opportunity_id=opp["id"], tags=[TAG_INVITED], application=_author_ids(application)))
    record("invitation", "ok", f"invited {email} to “{test.title}”", organization_id=org_id,
           opportunity_id=opp["id"], candidate_name=name, delivery_id=delivery_id,
           invitation_id=invitation_id)
    return Invited(test_id=test.id, test_title=test.title)


def _author_ids(application: dict) -> dict:
    return {k: application.get(k) for k in ("posting", "postingOwner", "postingHiringManager")
            if isinstance(application.get(k), str)}


def _skip(org_id: int, opp: dict, reason: str, message: str, delivery_id, always: bool = False) -> Skipped:
    if delivery_id is not None or always:
        # Reconciliation re-reads every recent opportunity; only what it acts on is logged.
        record("webhook" if delivery_id is not None else "invitation", "skipped", message,
               organization_id=org_id, opportunity_id=opp.get("id"), candidate_name=opp.get("name"),
               delivery_id=delivery_id)
    return skip(reason, message)


# --- who writes -------------------------------------------------------------------------------

def _usable(connection_id: str) -> Connection:
    connection = db.session.get(Connection, connection_id)
    if connection is None or not connection.usable:
        raise ConnectionUnusable(connection_id, "the Lever connection is not active")
    return connection


def resolve_author(connection: Connection, application: dict) -> tuple[str, str]:
    """The Lever user a write is performed as, and which role that user has.

    The posting's owner; else its hiring manager; else its creator; else the user chosen when
    the connection was made. Deactivated users are passed over. ``NoActiveUser`` when none is
    left (the write fails at once, visibly: retrying cannot help).
    """
    # docs/providers/lever.md#perform-as: how Lever treats perform_as for a deactivated user is
    # unverified, so we never send one.
    active = cache.active_user_ids(connection.id)
    order = [("owner", application.get("postingOwner")),
             ("hiring_manager", application.get("postingHiringManager"))]
    for role, user_id in order:
        if user_id and user_id in active:
            return user_id, role
    posting_id = application.get("posting")
    if posting_id:
        posting = cache.posting(connection.id, posting_id)
        for role, user_id in (("owner", posting.get("owner")),
                              ("hiring_manager", posting.get("hiringManager")),
                              ("creator", posting.get("user"))):
            if user_id and user_id in active:
                return user_id, role
    fallback = (connection.data or {}).get("fallback_user_id")
    if fallback:
        return fallback, "fallback"
    raise NoActiveUser("no active Lever user to write as: reconnect Lever as an active admin")


# --- completion → note ------------------------------------------------------------------------

def on_invitation_completed(sender, result_id: str, invitation_id: str, **extra) -> None:
    """A WeCP result of a Lever candidate becomes a note on the opportunity.

    Runs inside the transaction that stores the result: the note's row commits with it.
    """
    invitation = assessments.get_invitation(invitation_id)
    if invitation is None or invitation.source != KEY:
        return
    connection = _connection_of(invitation.organization_id)
    record("completion", "ok", f"completed “{invitation.test_title}”",
           organization_id=invitation.organization_id, opportunity_id=invitation.source_ref,
           candidate_name=invitation.candidate_name, invitation_id=invitation_id, result_id=result_id)
    if connection is None:
        record("note", "failed", "no Lever connection: connect Lever to post results",
               organization_id=invitation.organization_id, opportunity_id=invitation.source_ref,
               result_id=result_id)
        return
    schedule_once(post_note, Note(organization_id=invitation.organization_id, connection_id=connection.id,
                                  key=f"result:{result_id}", reason=Note.RESULT, result_id=result_id,
                                  test_id=invitation.test_id, opportunity_id=invitation.source_ref))


def on_result_regraded(sender, result_id: str, previous: dict, **extra) -> None:
    """A Lever candidate's score changed after its note was posted: one more note says so
    (Lever notes cannot be edited: docs/providers/lever.md#notes). A note not posted yet needs
    none: it is written with the score as it is when it runs."""
    result = assessments.get_result(result_id)
    if result is None or result.source != KEY:
        return
    posted = db.session.scalar(db.select(Note).filter_by(key=f"result:{result_id}", status="done"))
    if posted is None:
        return
    done = db.session.scalar(db.select(db.func.count(Note.id)).where(Note.key.like(f"regrade:{result_id}:%")))
    record("note", "ok", f"score corrected to {result.percentage:.0f}% (was {previous['percentage']:.0f}%): "
           f"a correction note follows", organization_id=result.organization_id,
           opportunity_id=result.source_ref, result_id=result_id)
    schedule_once(post_note, Note(organization_id=posted.organization_id, connection_id=posted.connection_id,
                                  key=f"regrade:{result_id}:{done + 1}", reason=Note.CORRECTION,
                                  result_id=result_id, test_id=posted.test_id,
                                  opportunity_id=posted.opportunity_id))


def result_tags(org_id: int, result) -> list[str]:
    """The tags of a result: completed, passed or failed, and "needs review" when the score is
    in the organization's review band (from ≤ score < to, in percent; off when to ≤ from)."""
    tags = [TAG_COMPLETED, TAG_PASSED if result.passed else TAG_FAILED]
    low, high = (int(get_setting(org_id, KEY, key) or 0) for key in ("review_from", "review_to"))
    if high > low and low <= float(result.percentage) < high:
        tags.append(TAG_REVIEW)
    return tags


def on_invitation_started(sender, invitation_id: str, **extra) -> None:
    """A Lever candidate pressed Start: the activity log says so, and the opportunity is tagged
    when the organization wants that tag. In the transaction that records the start."""
    invitation = assessments.get_invitation(invitation_id)
    if invitation is None or invitation.source != KEY:
        return
    org_id = invitation.organization_id
    record("start", "ok", f"started “{invitation.test_title}”", organization_id=org_id,
           opportunity_id=invitation.source_ref, candidate_name=invitation.candidate_name,
           invitation_id=invitation_id)
    _tag_about(invitation, "tag_started", f"started:{invitation_id}", TAG_STARTED)


def _tag_about(invitation, setting: str, key: str, tag: str) -> None:
    """Tag the invitation's opportunity once (``key``) when ``setting`` is on; the author is
    chosen when the tag is written (the connection's fallback user)."""
    org_id = invitation.organization_id
    connection = _connection_of(org_id)
    if connection is not None and get_setting(org_id, KEY, setting) \
            and invitation.source_ref and LEVER_ID.fullmatch(invitation.source_ref):
        schedule_once(tag_opportunity, Tag(
            organization_id=org_id, connection_id=connection.id, key=key,
            opportunity_id=invitation.source_ref, tags=[tag], application={}))


def on_invitation_expired(sender, invitation_id: str, **extra) -> None:
    """A Lever candidate's invitation ran out: say so in the activity log and tag the
    opportunity (when the organization wants that tag). In the expiring job's transaction."""
    invitation = assessments.get_invitation(invitation_id)
    if invitation is None or invitation.source != KEY:
        return
    org_id = invitation.organization_id
    record("invitation", "expired", f"“{invitation.test_title}” expired: not started or not submitted in time",
           organization_id=org_id, opportunity_id=invitation.source_ref,
           candidate_name=invitation.candidate_name, invitation_id=invitation_id)
    _tag_about(invitation, "tag_expired", f"expired:{invitation_id}", TAG_EXPIRED)


#: How often candidates are reminded of tests they have not started (see ``remind_candidates``).
REMIND_EVERY = timedelta(minutes=10)


@job("sync", retry=False)
def remind_candidates(connection_id: str) -> Outcome:
    """Periodic, per connection: one reminder email to each Lever candidate who has not started
    a test and whose deadline is nearer than the organization's setting (0: never)."""
    connection = db.session.get(Connection, connection_id)
    if connection is None:
        return skip("no_connection", "no such connection")
    org_id = connection.organization_id
    hours = int(get_setting(org_id, KEY, "reminder_hours") or 0)
    if hours <= 0:
        return skip("off", "reminders are off")
    sent = 0
    for invitation_id in assessments.invitations_to_remind(org_id, KEY, timedelta(hours=hours)):
        invitation = assessments.get_invitation(invitation_id)
        if assessments.remind_invitation(invitation_id):
            sent += 1
            record("email", "ok", f"reminded {invitation.candidate_email} of “{invitation.test_title}”, "
                   f"not started yet", organization_id=org_id, opportunity_id=invitation.source_ref,
                   candidate_name=invitation.candidate_name, invitation_id=invitation_id)
    return Reminded(count=sent)


@dataclass(frozen=True)
class Reminded(Outcome):
    code: ClassVar[str] = "reminded"
    count: int = 0

    def describe(self) -> str:
        return f"{self.count} candidate(s) reminded"


def on_invitation_cancelled(sender, invitation_id: str, reason: str = "", **extra) -> None:
    """A Lever candidate's invitation was withdrawn before they started: the activity log says
    why. In the cancelling transaction."""
    invitation = assessments.get_invitation(invitation_id)
    if invitation is None or invitation.source != KEY:
        return
    record("invitation", "cancelled", f"invitation to “{invitation.test_title}” withdrawn before the "
           f"candidate started: {reason or 'cancelled'}; their link now says so",
           organization_id=invitation.organization_id, opportunity_id=invitation.source_ref,
           candidate_name=invitation.candidate_name, invitation_id=invitation_id)


def _connection_of(org_id: int) -> Connection | None:
    return db.session.scalar(db.select(Connection).filter_by(organization_id=org_id, plugin_key=KEY))


def note_text(note: Note, result=None) -> tuple[str, str]:
    """The note's plain text and the marker by which a re-run recognises it in Lever
    (``result``: the note's result, when the caller has read it already)."""
    if note.reason in (Note.NO_EMAIL, Note.INVALID_EMAIL):
        test = assessments.get_test(note.test_id)
        problem = ("has an email address WeCP cannot send to (it is malformed); correct it"
                   if note.reason == Note.INVALID_EMAIL else "has no email address; add one")
        text = (f"WeCP could not invite this candidate to “{test.title}”: the Lever profile {problem} "
                f"and move the candidate into the stage again.")
        return text, text
    result = result or assessments.get_result(note.result_id)
    url = assessments.report_url(result.id)
    verdict = "Passed" if result.passed else "Failed"
    if note.reason == Note.CORRECTION:
        # Its own marker: the earlier note holds the same report link.
        marker = f"WeCP score correction {note.key.rsplit(':', 1)[-1]}"
        text = (f"{marker}: {result.test_title}\n"
                f"Corrected score: {result.score} / {result.max_score} ({result.percentage:.0f}%) — {verdict}"
                f" (pass mark {result.pass_mark}%)\n"
                f"This replaces the score in WeCP's earlier note: the test's answers were corrected "
                f"and the result graded again.\n"
                f"{REPORT_LINE}{url}")
        return text, marker
    # docs/providers/lever.md#notes: notes are plain text, HTML shows literally; a bare URL is
    # what Lever turns into a link.
    text = (f"WeCP assessment completed: {result.test_title}\n"
            f"Score: {result.score} / {result.max_score} ({result.percentage:.0f}%) — {verdict}"
            f" (pass mark {result.pass_mark}%)\n"
            f"Completed: {result.completed_at.strftime('%Y-%m-%d %H:%M')} UTC\n"
            f"{REPORT_LINE}{url}")
    return text, url


#: Lever calls of a note's first run: the author's read, the note.
NOTE_CALLS = 2


@durable(Note, queue="default", title="Lever note", admit=admission(NOTE_CALLS), describe=activity.work_subjects)
def post_note(note: Note) -> Outcome:
    """Post the note on its Lever opportunity, exactly once, even when run twice.

    Lever has no idempotency keys (docs/providers/lever.md#rest-api): a run after an attempt
    that may have reached Lever (``attempts > 1``) looks for the note by its marker first.
    """
    connection = _usable(note.connection_id)
    result = assessments.get_result(note.result_id) if note.result_id else None
    text, marker = note_text(note, result)
    plan_calls(NOTE_CALLS + 1 if note.attempts > 1 else NOTE_CALLS)  # a rerun searches first
    client = LeverClient(connection.id)
    if note.attempts > 1:
        for existing in client.list_notes(note.opportunity_id):
            if marker in _note_value(existing):
                return _posted(connection, note, result, existing.get("id"), None,
                               NotePosted(role=note.perform_as_role or "", found=True))
    opp = client.get_opportunity(note.opportunity_id)
    author, role = resolve_author(connection, _application(opp) or {})
    note.perform_as, note.perform_as_role = author, role
    created = client.add_note(note.opportunity_id, text, perform_as=author)
    return _posted(connection, note, result, (created or {}).get("noteId") or (created or {}).get("id"),
                   opp, NotePosted(role=role))


def _note_value(note: dict) -> str:
    value = note.get("value")
    if isinstance(value, str):
        return value
    # docs/providers/lever.md#notes: listed notes hold their text in fields[].
    return " ".join(str(f.get("value", "")) for f in note.get("fields") or [] if isinstance(f, dict))


def _posted(connection: Connection, note: Note, result, lever_note_id, opp: dict | None,
            outcome: NotePosted) -> NotePosted:
    """Record the note posted, with the result's tags and move the settings ask for."""
    note.lever_note_id = lever_note_id
    record("note", "ok", outcome.describe(), organization_id=note.organization_id,
           opportunity_id=note.opportunity_id, result_id=note.result_id,
           invitation_id=result.invitation_id if result else None)
    if result is None:
        return outcome
    org_id = note.organization_id
    if note.perform_as and get_setting(org_id, KEY, "tag_results"):
        schedule_once(tag_opportunity, Tag(
            organization_id=org_id, connection_id=connection.id, key=f"result:{result.id}",
            opportunity_id=note.opportunity_id, perform_as=note.perform_as,
            tags=result_tags(org_id, result)))
    stage = (get_setting(org_id, KEY, "advance_on_pass_stage") or "").strip()
    if stage and result.passed and (opp is None or opp.get("stage") != stage):
        if not LEVER_ID.fullmatch(stage):
            record("move", "failed", "“Move candidates who pass” does not name one of Lever's stages: "
                   "pick the stage again in the Lever settings", organization_id=org_id,
                   opportunity_id=note.opportunity_id, result_id=result.id)
        else:
            schedule_once(advance_candidate, StageMove(
                organization_id=org_id, connection_id=connection.id, key=f"advance:{result.id}",
                opportunity_id=note.opportunity_id, stage_id=stage, result_id=result.id,
                perform_as=note.perform_as))
    return outcome


def _tag_turn(connection_id: str) -> None:
    """A tag's turn: after the invitations and notes waiting for the same tokens (``Defer``
    until then). Asked before its row is claimed, so a run given back (most tags of a bulk move
    are, while its invitations hold the account's tokens) costs nothing else
    (docs/performance.md, B5); asked again in the run, where it is already settled."""
    plan_calls(1, background=True)
    LeverClient(connection_id).ready()


@durable(Tag, queue="sync", title="Lever tags", admit=admission(1, background=True), ready=_tag_turn,
         describe=activity.work_subjects)
def tag_opportunity(tag: Tag) -> Outcome:
    """Add the stored tags (adding a tag Lever already has is a no-op there: a rerun is harmless).

    On the ``sync`` queue: in a bulk move every invitation email comes first.
    """
    connection = _usable(tag.connection_id)
    _tag_turn(connection.id)
    client = LeverClient(connection.id)
    author = tag.perform_as or resolve_author(connection, tag.application or {})[0]
    client.add_tags(tag.opportunity_id, tag.tags, perform_as=author)
    return Tagged(count=len(tag.tags))


@durable(StageMove, queue="default", title="Lever stage move", admit=admission(2), describe=activity.work_subjects)
def advance_candidate(move: StageMove) -> Outcome:
    """Move a candidate who passed to the configured stage, once per result.

    A run after a crash between the move and its record finds the candidate in the stage. The
    move fires another candidateStageChange at us (docs/providers/lever.md#stage-change): it is
    harmless, since a stage is only acted on if a test is linked to it, and a test already taken
    is never sent again.
    """
    connection = _usable(move.connection_id)
    plan_calls(2)  # the read, the move
    client = LeverClient(connection.id)
    opp = client.get_opportunity(move.opportunity_id)
    if opp.get("stage") == move.stage_id:
        outcome = Moved(already=True)
    else:
        author = move.perform_as or resolve_author(connection, _application(opp) or {})[0]
        client.change_stage(move.opportunity_id, move.stage_id, perform_as=author)
        outcome = Moved()
    stage_text = next((s.get("text") for s in cache.stages(connection.id) if s.get("id") == move.stage_id),
                      move.stage_id)
    record("move", "ok", f"moved to “{stage_text}” after passing", organization_id=move.organization_id,
           opportunity_id=move.opportunity_id, result_id=move.result_id)
    return outcome


# --- reconciliation ----------------------------------------------------------------------------

#: Reconciliation reads back this far before its last run, so moves recorded late are not missed.
RECONCILE_OVERLAP = timedelta(minutes=10)
#: A new connection looks this far back on its first run.
RECONCILE_FIRST_LOOKBACK = timedelta(days=2)
#: The reconciliation's interval (``HUB_PERIODIC_INTERVALS`` may change it); while runs find
#: nothing, a connection is read again after 1, 2, 4, 8 … intervals, at most every hour.
RECONCILE_EVERY = timedelta(minutes=5)
RECONCILE_QUIET_AT_MOST = timedelta(hours=1)


def _may_wait(connection_id: str, cursor: ReconcileCursor, links: list, now) -> bool:
    """Nothing moved in the last runs, and nothing says to read now: no link made since the last
    run, no delivery of the account since (its stages move again), and Lever has sent this
    connection a delivery before. Without any, Candidate Stage Change may be off in Lever
    (docs/providers/lever.md#webhook-delivery) and reconciliation is how moves are found: it
    keeps reading every interval."""
    if not cursor.quiet_runs or now >= cursor.ran_at + quiet_for(cursor.quiet_runs):
        return False
    if any(link.linked_at is None or link.linked_at >= cursor.ran_at for link in links):
        return False
    deliveries = db.select(WebhookDelivery.id).where(WebhookDelivery.connection_id == connection_id)
    if db.session.scalar(deliveries.limit(1)) is None:
        return False
    return db.session.scalar(deliveries.where(WebhookDelivery.received_at >= cursor.ran_at).limit(1)) is None


def quiet_for(quiet_runs: int) -> timedelta:
    """How long after a run that was the ``quiet_runs``-th in a row to find nothing the next
    run reads Lever (a tenth of an interval early: runs fall at the connection's offset, give or
    take a tick)."""
    if quiet_runs <= 0:
        return timedelta(0)
    every = timedelta(seconds=float(current_app.config["HUB_PERIODIC_INTERVALS"].get(
        f"{__name__}.reconcile_postings", RECONCILE_EVERY.total_seconds())))
    return min(every * 2 ** (quiet_runs - 1), max(RECONCILE_QUIET_AT_MOST, every)) - every / 10


@job("sync", retry=False)
def reconcile_postings(connection_id: str) -> Outcome:
    """Find stage changes whose webhook never arrived and act on them through the same path.

    Lists the opportunities in each linked posting and stage updated since the last run; any
    move the hub did not act on is handled exactly as a webhook would be (same claim keys).
    One run per connection at a time: a run longer than the interval (a first run reading two
    days back, a slow Lever) would otherwise overlap the next slot's, and two runs that both
    find no cursor both insert one, so the second fails for good on the primary key.
    """
    lock = get_redis().lock(f"wecp_lever:reconcile:{connection_id}",
                            timeout=int(current_app.config.get("HUB_JOB_TIMEOUT", 300)) + 60)
    if not lock.acquire(blocking=False):
        return skip("already_running", "another reconciliation of this connection is running")
    try:
        return _reconcile(connection_id)
    finally:
        try:
            lock.release()
        except LockError:  # expired meanwhile: the next run may already hold a new one
            pass


def _reconcile(connection_id: str) -> Outcome:
    connection = db.session.get(Connection, connection_id)
    if connection is None or not connection.usable:
        return skip("not_usable", "connection not usable")
    links = list(db.session.scalars(db.select(PostingLink).filter_by(
        organization_id=connection.organization_id)))
    if not links:
        return skip("no_links", "no links")
    cursor = db.session.get(ReconcileCursor, connection_id)
    started = utcnow()
    if cursor is not None and _may_wait(connection_id, cursor, links, started):
        return skip("quiet", f"nothing moved in {cursor.quiet_runs} runs in a row: read again after "
                             f"{cursor.ran_at + quiet_for(cursor.quiet_runs):%H:%M} UTC")
    since = (started - RECONCILE_FIRST_LOOKBACK) if cursor is None else \
        _from_ms(cursor.updated_at_ms) - RECONCILE_OVERLAP
    client = LeverClient(connection_id)
    seen = invited = 0
    for posting_id, stage_id in sorted({(link.posting_id, link.stage_id) for link in links}):
        for opp in client.list_opportunities(posting_id=posting_id, stage_id=stage_id,
                                             updated_at_start=since, expand_applications=True):
            if not isinstance(opp.get("id"), str) or not LEVER_ID.fullmatch(opp["id"]):
                continue
            seen += 1
            outcome = process_stage_change(connection, opp["id"], stage_id, via="reconcile",
                                           opportunity=opp)
            parts = outcome.parts if isinstance(outcome, Several) else (outcome,)
            acted = sum(isinstance(p, Invited) for p in parts)
            invited += acted
            if acted:
                _note_if_missed(connection, opp, stage_id, started)
    cursor = cursor or ReconcileCursor(connection_id=connection_id, updated_at_ms=0, quiet_runs=0)
    cursor.updated_at_ms = _to_ms(started)
    cursor.ran_at = started
    cursor.quiet_runs = 0 if seen else (cursor.quiet_runs or 0) + 1
    db.session.add(cursor)
    return Reconciled(checked=seen, invited=invited)


#: A delivery received this long before a move's time still shows that Lever sends webhooks
#: (Lever's clock and ours may differ a little).
DELIVERY_CLOCK_MARGIN = timedelta(minutes=2)


def _note_if_missed(connection: Connection, opp: dict, stage_id: str, now) -> None:
    """Reconciliation just invited a candidate: if no webhook delivery at all reached this
    connection since the move, Lever is not sending stage changes (the Candidate Stage Change
    toggle is off): say so in the activity log, which the card reads (``missed_stage_changes``).

    Any delivery received since counts, queued or not: it shows that Lever sends, and this
    move's own delivery may simply be on its way (docs/providers/lever.md#webhook-delivery).
    """
    moved = _from_ms(_moved_at(opp, stage_id)) if _moved_at(opp, stage_id) else now
    received = db.session.scalar(db.select(WebhookDelivery.id).where(
        WebhookDelivery.connection_id == connection.id,
        WebhookDelivery.received_at >= moved - DELIVERY_CLOCK_MARGIN).limit(1))
    if received is not None:
        return
    minutes = max(1, round((now - moved).total_seconds() / 60))
    record("webhook", "missed", f"Lever sent no webhook for this move: WeCP's periodic check found it "
           f"about {minutes} min later and acted then. {SWITCH_STAGE_CHANGE_ON}",
           organization_id=connection.organization_id, opportunity_id=opp.get("id"),
           candidate_name=opp.get("name"))


def missed_stage_changes(connection: Connection) -> tuple[int, object]:
    """Moves found by reconciliation with no webhook since the last delivery Lever sent:
    (how many, when the last was found). (0, None) once a delivery arrived after them."""
    last_delivery = db.session.scalar(db.select(db.func.max(WebhookDelivery.received_at))
                                      .where(WebhookDelivery.connection_id == connection.id))
    query = db.select(db.func.count(ActivityLine.id), db.func.max(ActivityLine.created_at)).where(
        ActivityLine.organization_id == connection.organization_id, ActivityLine.plugin_key == "wecp_lever",
        ActivityLine.kind == "webhook", ActivityLine.status == "missed")
    if connection.connected_at is not None:  # a reconnect starts afresh
        query = query.where(ActivityLine.created_at >= connection.connected_at)
    if last_delivery is not None:
        query = query.where(ActivityLine.created_at > last_delivery)
    count, last = db.session.execute(query).one()
    return int(count or 0), last


def _to_ms(value) -> int:
    from calendar import timegm

    return timegm(value.timetuple()) * 1000 + value.microsecond // 1000


def _from_ms(ms: int):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)

