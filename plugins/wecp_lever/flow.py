"""The WeCP–Lever flow: a stage change invites the candidate; a completed test becomes a note."""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from marshmallow import ValidationError
from redis.exceptions import LockError, RedisError
from sqlalchemy.exc import IntegrityError

from hub.extensions import db, get_redis
from hub.jobs import Skipped, enqueue, enqueue_after_commit, safe_job_id
from hub.models import Connection, WebhookDelivery, utcnow
from hub.plugin import ConnectionUnusable
from hub.settings import get_setting

from . import cache
from .lever import LeverClient, NotFound
from .models import Note, PostingLink, ReconcileCursor, StageChange, Tag, record
from .schemas import StageChangeDataSchema
from .webhooks import SUPPORTED_EVENTS

log = logging.getLogger("wecp_lever")

KEY = "wecp_lever"
TAG_INVITED = "WeCP: invited"
TAG_COMPLETED = "WeCP: completed"
TAG_PASSED = "WeCP: passed"
TAG_FAILED = "WeCP: failed"
#: Printed in every result note, followed by the report URL: how a re-run finds its own note.
REPORT_LINE = "View a detailed report on WeCP: "


# --- stage change → invitation -----------------------------------------------------------------

def handle_stage_change(delivery_id: int) -> str:
    """The Lever webhook source's handler: act on one stored delivery."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery.event not in SUPPORTED_EVENTS:
        raise Skipped(f"unsupported event {delivery.event}")
    try:
        data = StageChangeDataSchema().load((delivery.payload or {}).get("data") or {})
    except ValidationError as exc:
        raise Skipped(f"invalid data: {', '.join(sorted(exc.messages))}") from exc
    outcome = process_stage_change(delivery.connection_id, data["opportunity_id"],
                                   data["to_stage_id"], via="webhook", delivery_id=delivery_id)
    if all(part.startswith("skipped: ") for part in outcome.split("; ")):
        raise Skipped(outcome.replace("skipped: ", ""))
    return outcome


def _links(organization_id: int, stage_id: str, posting_id: str | None = None) -> list[PostingLink]:
    query = db.select(PostingLink).filter_by(organization_id=organization_id, stage_id=stage_id)
    if posting_id is not None:
        query = query.filter_by(posting_id=posting_id)
    return list(db.session.scalars(query.order_by(PostingLink.id)))


def process_stage_change(connection_id: str, opportunity_id: str, stage_id: str, *, via: str,
                         delivery_id: int | None = None, opportunity: dict | None = None) -> str:
    """Invite the candidate to every test linked to their posting and new stage, once.

    Lever signs only ``token + triggeredAt``, not ``data``: the opportunity is re-read from
    Lever (unless reconciliation just read it) and only its current stage and posting count.
    """
    connection = db.session.get(Connection, connection_id)
    org_id = connection.organization_id
    # Most stage changes concern no linked stage: answer those without calling Lever at all.
    if not _links(org_id, stage_id):
        return f"skipped: no test is linked to stage {stage_id}"
    if not connection.usable:
        raise ConnectionUnusable(connection_id, "the Lever connection is not active")
    if opportunity is None:
        try:
            opportunity = LeverClient(connection_id).get_opportunity(opportunity_id)
        except NotFound:
            return _skip(org_id, {"id": opportunity_id}, "the opportunity no longer exists in Lever",
                         delivery_id)
    opp = opportunity
    if opp.get("stage") != stage_id:
        return _skip(org_id, opp, f"no longer in that stage (now in {opp.get('stage')})", delivery_id)
    application = _application(opp)
    if application is None:
        return _skip(org_id, opp, "the opportunity has no job posting", delivery_id)
    links = _links(org_id, stage_id, application["posting"])
    if not links:
        return _skip(org_id, opp, "no test is linked to this posting and stage", delivery_id)
    outcomes = [_invite(connection, opp, application, link, via, delivery_id) for link in links]
    db.session.commit()
    return "; ".join(outcomes)


def _application(opp: dict) -> dict | None:
    # Lever docs (/developer/documentation#opportunities): an opportunity has at most one
    # application; with expand=applications it is an object carrying posting and postingOwner.
    for app in opp.get("applications") or []:
        if isinstance(app, dict) and app.get("posting"):
            return app
    return None


def _moved_at(opp: dict, stage_id: str) -> int:
    """When Lever recorded the opportunity's latest move into ``stage_id`` (epoch ms)."""
    times = [c.get("updatedAt") or 0 for c in opp.get("stageChanges") or []
             if isinstance(c, dict) and c.get("toStageId") == stage_id]
    return max(times) if times else int(opp.get("lastAdvancedAt") or opp.get("updatedAt") or 0)


def _claim(row) -> bool:
    """Insert a row whose unique key marks work as taken; False when it was taken before."""
    try:
        with db.session.begin_nested():
            db.session.add(row)
        return True
    except IntegrityError:
        return False


def _invite(connection: Connection, opp: dict, application: dict, link: PostingLink, via: str,
            delivery_id: int | None) -> str:
    from hub.assessments.services import create_invitation

    org_id = connection.organization_id
    name = opp.get("name") or ""
    if (application.get("createdAt") or 0) < link.linked_at_ms:
        # The product's rule: candidates already in the posting before the link are not affected.
        return _skip(org_id, opp, f"was in the posting before “{link.test.title}” was linked",
                     delivery_id, commit=False)
    if opp.get("archived") or application.get("archived"):
        return _skip(org_id, opp, "the opportunity is archived", delivery_id, commit=False)
    # One move into the stage counts once per test, however often (and by whichever path) we
    # hear of it; a later move out and back in is a new move with a new time.
    claim = StageChange(organization_id=org_id, opportunity_id=opp["id"], stage_id=link.stage_id,
                        test_id=link.test_id, via=via,
                        key=f"{connection.id}:{opp['id']}:{link.stage_id}:{_moved_at(opp, link.stage_id)}:{link.test_id}")
    if not _claim(claim):
        return f"already handled this move for “{link.test.title}”"
    emails = [e for e in opp.get("emails") or [] if isinstance(e, str) and "@" in e]
    if not emails:
        key = f"no-email:{opp['id']}:{link.test_id}"
        if _claim(Note(organization_id=org_id, connection_id=connection.id, key=key,
                       opportunity_id=opp["id"])):
            enqueue_after_commit("plugins.wecp_lever.flow.post_note", key,
                                 job_id=safe_job_id("wecp_lever-note", key))
        return _skip(org_id, opp, "no email address on the Lever profile; a note in Lever says so",
                     delivery_id, commit=False)
    tag_key = None
    if get_setting(org_id, KEY, "tag_invited"):
        tag_key = _claim_tags(connection, opp, application, [TAG_INVITED], key=f"invited:{claim.key}")
    invitation, created = create_invitation(  # commits the claim and the tag with the invitation
        link.test_id, name=name, email=emails[0], source=KEY, source_ref=opp["id"],
        idempotency_key=f"{KEY}:{org_id}:{opp['id']}:{link.test_id}")
    if tag_key:
        # Tags go to the "sync" queue: in a bulk move every invitation email comes first.
        _enqueue_tags(tag_key)
    if not created:
        record("invitation", "skipped", f"already invited to “{link.test.title}” (still valid)",
               organization_id=org_id, opportunity_id=opp["id"], candidate_name=name,
               delivery_id=delivery_id, invitation_id=invitation.id)
        return f"already invited to “{link.test.title}”"
    record("invitation", "ok", f"invited {emails[0]} to “{link.test.title}”", organization_id=org_id,
           opportunity_id=opp["id"], candidate_name=name, delivery_id=delivery_id,
           invitation_id=invitation.id)
    return f"invited to “{link.test.title}”"


def _skip(org_id: int, opp: dict, reason: str, delivery_id, commit: bool = True) -> str:
    if delivery_id is None:
        # Reconciliation re-reads every recent opportunity; only what it acts on is logged.
        return f"skipped: {reason}"
    record("webhook", "skipped", reason, organization_id=org_id, opportunity_id=opp.get("id"),
           candidate_name=opp.get("name"), delivery_id=delivery_id)
    if commit:
        db.session.commit()
    return f"skipped: {reason}"


# --- Lever writes, each exactly once ----------------------------------------------------------

def _claim_tags(connection: Connection, opp: dict, application: dict, tags: list[str], *,
                key: str, perform_as: str | None = None) -> str | None:
    """Store the tags to add (in the caller's transaction); the key, or None if not stored."""
    if perform_as is None:
        try:
            perform_as, _ = resolve_author(connection, application)
        except RuntimeError as exc:  # no active Lever user: the invitation matters more than a tag
            record("tag", "failed", str(exc), organization_id=connection.organization_id,
                   opportunity_id=opp.get("id"), candidate_name=opp.get("name"))
            return None
    _claim(Tag(organization_id=connection.organization_id, connection_id=connection.id, key=key,
               opportunity_id=opp["id"], tags=tags, perform_as=perform_as))
    return key


def _enqueue_tags(key: str) -> None:
    try:
        enqueue("plugins.wecp_lever.flow.tag_opportunity", key, queue="sync",
                job_id=safe_job_id("wecp_lever-tag", key))
    except Exception:  # RedisError, or the job itself in the inline queue mode
        # The row is committed: sweep_lever_writes enqueues it again.
        log.warning("wecp_lever.tag.enqueue_failed key=%s", key, exc_info=True)


def tag_opportunity(key: str) -> str:
    """Add the stored tags (adding a tag Lever already has is a no-op there: a rerun is harmless)."""
    tag = db.session.scalar(db.select(Tag).filter_by(key=key))
    if tag is None or tag.status == "done":
        return "already tagged" if tag else "no such tag"
    _usable(tag.connection_id)
    tag.attempts += 1
    db.session.commit()
    try:
        LeverClient(tag.connection_id).add_tags(tag.opportunity_id, tag.tags, perform_as=tag.perform_as)
    except Exception as exc:
        db.session.rollback()
        tag.error = str(exc)[:500]
        db.session.commit()
        raise
    tag.status, tag.done_at, tag.error = "done", utcnow(), None
    db.session.commit()
    return f"tagged {', '.join(tag.tags)}"


def _usable(connection_id: str) -> Connection:
    connection = db.session.get(Connection, connection_id)
    if connection is None or not connection.usable:
        raise ConnectionUnusable(connection_id, "the Lever connection is not active")
    return connection


def resolve_author(connection: Connection, application: dict) -> tuple[str, str]:
    """The Lever user a write is performed as, and which role that user has.

    The posting's owner; else its hiring manager; else its creator; else the user chosen when
    the connection was made. Deactivated users are passed over.
    """
    # lever-api.md: how Lever treats perform_as for a deactivated user is unverified, so we
    # never send one.
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
    raise RuntimeError("no active Lever user to write as: reconnect Lever as an active admin")


def on_invitation_completed(sender, result_id: str, invitation_id: str, **extra) -> None:
    """A WeCP result of a Lever candidate becomes a note on the opportunity (in a job)."""
    from hub.assessments.models import Invitation

    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None or invitation.source != KEY:
        return
    connection = _connection_of(invitation.organization_id)
    if connection is None:
        return
    key = f"result:{result_id}"
    record("completion", "ok", f"completed “{invitation.test.title}”",
           organization_id=invitation.organization_id, opportunity_id=invitation.source_ref,
           candidate_name=invitation.candidate_name, invitation_id=invitation_id, result_id=result_id)
    _claim(Note(organization_id=invitation.organization_id, connection_id=connection.id, key=key,
                result_id=result_id, opportunity_id=invitation.source_ref))
    db.session.commit()
    _enqueue_note(key)


def _enqueue_note(key: str) -> None:
    try:
        enqueue("plugins.wecp_lever.flow.post_note", key, job_id=safe_job_id("wecp_lever-note", key))
    except RedisError:  # the note is committed: sweep_lever_writes enqueues it again
        log.warning("wecp_lever.note.enqueue_failed key=%s", key)


def _connection_of(org_id: int) -> Connection | None:
    return db.session.scalar(db.select(Connection).filter_by(organization_id=org_id, plugin_key=KEY))


def note_text(note: Note) -> tuple[str, str]:
    """The note's plain text and the marker by which a re-run recognises it in Lever."""
    from hub.assessments.models import Invitation, Result
    from hub.assessments.services import report_url

    if note.result_id is None:
        _, opportunity_id, test_id = note.key.split(":", 2)
        from hub.assessments.models import AssessmentTest

        test = db.session.get(AssessmentTest, int(test_id))
        text = (f"WeCP could not invite this candidate to “{test.title}”: the Lever profile has "
                f"no email address. Add one and move the candidate into the stage again.")
        return text, text
    result = db.session.get(Result, note.result_id)
    invitation = db.session.get(Invitation, result.invitation_id)
    url = report_url(result.id)
    verdict = "Passed" if result.passed else "Failed"
    # Lever docs (/developer/documentation#add-a-note): notes are plain text, HTML shows
    # literally; a bare URL is what Lever turns into a link.
    text = (f"WeCP assessment completed: {invitation.test.title}\n"
            f"Score: {result.score} / {result.max_score} ({result.percentage:.0f}%) — {verdict}"
            f" (pass mark {result.pass_mark}%)\n"
            f"Completed: {result.completed_at.strftime('%Y-%m-%d %H:%M')} UTC\n"
            f"{REPORT_LINE}{url}")
    return text, url


#: How long a run that started posting a note is trusted to finish before another may check.
POSTING_LEASE = timedelta(minutes=2)


class NoteInFlight(RuntimeError):
    """Another run is posting this note right now; retried later (RQ's retry policy)."""


def post_note(key: str) -> str:
    """Post the note with ``key`` on its Lever opportunity, exactly once, even when run twice.

    A second run finds the note recorded and stops; a run that died after Lever accepted the
    note but before we recorded it finds the note in Lever by its marker instead of posting
    again (Lever has no idempotency keys).
    """
    note = db.session.scalar(db.select(Note).filter_by(key=key).with_for_update())
    if note is None or note.status == "posted":
        db.session.rollback()
        return "already posted" if note else "no such note"
    connection = db.session.get(Connection, note.connection_id)
    if not connection.usable:
        note.status = "paused"
        db.session.commit()
        raise ConnectionUnusable(connection.id, "the note waits for Lever to be reconnected")
    if note.status == "posting" and note.attempted_at and \
            utcnow() - note.attempted_at < POSTING_LEASE:
        db.session.rollback()
        # Another run is between its POST and recording it: a retry will find its note.
        raise NoteInFlight(f"note {key} is being posted by another run")
    text, marker = note_text(note)
    client = LeverClient(connection.id)
    if note.attempts:
        for existing in client.list_notes(note.opportunity_id):
            if marker in _note_value(existing):
                return _posted(note, existing.get("id"), "found in Lever (an earlier run posted it)")
    opp = client.get_opportunity(note.opportunity_id)
    author, role = resolve_author(connection, _application(opp) or {})
    note.attempts += 1
    note.status, note.attempted_at = "posting", utcnow()
    note.perform_as, note.perform_as_role = author, role
    db.session.commit()  # the attempt is on record before Lever can act on the POST
    try:
        created = client.add_note(note.opportunity_id, text, perform_as=author)
    except Exception as exc:
        note.error = str(exc)[:500]
        db.session.commit()
        raise
    outcome = _posted(note, (created or {}).get("noteId") or (created or {}).get("id"),
                      f"posted as the posting's {role.replace('_', ' ')}")
    if note.result_id:
        _after_result_note(connection, note, opp)
    return outcome


def _note_value(note: dict) -> str:
    value = note.get("value")
    if isinstance(value, str):
        return value
    # Lever docs (/developer/documentation#notes): listed notes hold their text in fields[].
    return " ".join(str(f.get("value", "")) for f in note.get("fields") or [] if isinstance(f, dict))


def _posted(note: Note, lever_note_id, message: str) -> str:
    """Record the note posted, with the result tags the settings ask for in the same commit."""
    from hub.assessments.models import Result

    note.status, note.lever_note_id, note.posted_at, note.error = "posted", lever_note_id, utcnow(), None
    result = db.session.get(Result, note.result_id) if note.result_id else None
    record("note", "ok", message, organization_id=note.organization_id,
           opportunity_id=note.opportunity_id, result_id=note.result_id,
           invitation_id=result.invitation_id if result else None)
    tag_key = None
    if result and note.perform_as and get_setting(note.organization_id, KEY, "tag_results"):
        connection = db.session.get(Connection, note.connection_id)
        tag_key = _claim_tags(connection, {"id": note.opportunity_id}, {},
                              [TAG_COMPLETED, TAG_PASSED if result.passed else TAG_FAILED],
                              key=f"result:{result.id}", perform_as=note.perform_as)
    db.session.commit()
    if tag_key:
        _enqueue_tags(tag_key)
    return message


def _after_result_note(connection: Connection, note: Note, opp: dict) -> None:
    """The optional move on pass, as the organization's settings ask."""
    from hub.assessments.models import Result

    result = db.session.get(Result, note.result_id)
    org_id = connection.organization_id
    stage = get_setting(org_id, KEY, "advance_on_pass_stage")
    if stage and result.passed and opp.get("stage") != stage:
        enqueue("plugins.wecp_lever.flow.advance_candidate", note.key, stage,
                job_id=safe_job_id("wecp_lever-advance", result.id))


def advance_candidate(note_key: str, stage_id: str) -> str:
    """Move a candidate who passed to the configured stage, once per result.

    The claim is recorded after Lever made the move, so a failed call is retried rather than
    taken for done; a run repeated after a crash between the move and the claim finds the
    candidate already in the stage. The move fires another candidateStageChange at us; it is
    harmless: the stage is only acted on if a test is linked to it, and a test already taken is
    never sent again.
    """
    note = db.session.scalar(db.select(Note).filter_by(key=note_key))
    key = f"advance:{note.key}"
    if db.session.scalar(db.select(StageChange.id).filter_by(key=key)):
        return "already moved"
    connection = _usable(note.connection_id)
    client = LeverClient(connection.id)
    opp = client.get_opportunity(note.opportunity_id)
    if opp.get("stage") != stage_id:
        author, _ = resolve_author(connection, _application(opp) or {})
        client.change_stage(note.opportunity_id, stage_id, perform_as=author)
    if not _claim(StageChange(organization_id=note.organization_id, opportunity_id=note.opportunity_id,
                              stage_id=stage_id, test_id=_test_of(note), via="advance", key=key)):
        return "already moved"
    record("note", "ok", f"moved to stage {stage_id} after passing", organization_id=note.organization_id,
           opportunity_id=note.opportunity_id, result_id=note.result_id)
    db.session.commit()
    return f"moved to {stage_id}"


def _test_of(note: Note) -> int:
    from hub.assessments.models import Result

    return db.session.get(Result, note.result_id).test_id


def on_connection_restored(sender, connection, **extra) -> None:
    if connection.plugin_key == KEY:
        enqueue("plugins.wecp_lever.flow.resume_lever_writes", connection.id,
                job_id=safe_job_id("wecp_lever-resume-writes", connection.id))


#: Notes and tags older than this are given up by the sweeper (shown as problems on the card).
SWEEP_WINDOW = timedelta(days=7)


def resume_lever_writes(connection_id: str) -> str:
    """Re-enqueue the notes and tags left waiting while the connection was unusable (on connection_restored)."""
    return _requeue_writes([connection_id])


def sweep_lever_writes() -> str:
    """Periodic: enqueue again the notes and tags whose job was lost or failed for good.

    Their rows commit with the work that asks for them and the job is enqueued after; Redis
    going away in between, a worker dying, or a Lever outage longer than the job's retries
    would otherwise leave them undone. Rows younger than HUB_SWEEP_AFTER_SECONDS are left to
    the job enqueued with them.
    """
    young = utcnow() - timedelta(seconds=current_app.config.get("HUB_SWEEP_AFTER_SECONDS", 10))
    usable = [c.id for c in db.session.scalars(db.select(Connection).filter_by(plugin_key=KEY)) if c.usable]
    return _requeue_writes(usable, created_before=young)


def _requeue_writes(connection_ids: list[str], created_before=None) -> str:
    """Enqueue the unfinished notes and tags of these connections, within SWEEP_WINDOW.

    Same job ids as the first enqueue: a job still queued, running or waiting for a retry is
    left alone, so this is safe to run as often as one likes.
    """
    oldest = utcnow() - SWEEP_WINDOW
    note_rows = db.select(Note.key).where(Note.connection_id.in_(connection_ids), Note.created_at > oldest,
                                          Note.status.in_(("pending", "posting", "paused")))
    tag_rows = db.select(Tag.key).where(Tag.connection_id.in_(connection_ids), Tag.created_at > oldest,
                                        Tag.status == "pending")
    if created_before is not None:
        note_rows = note_rows.where(Note.created_at < created_before)
        tag_rows = tag_rows.where(Tag.created_at < created_before)
    notes = list(db.session.scalars(note_rows.limit(500)))
    tags = list(db.session.scalars(tag_rows.limit(500)))
    db.session.rollback()
    for key in notes:
        _enqueue_note(key)
    for key in tags:
        _enqueue_tags(key)
    return f"notes {len(notes)}, tags {len(tags)}"


# --- reconciliation ----------------------------------------------------------------------------

#: Reconciliation reads back this far before its last run, so moves recorded late are not missed.
RECONCILE_OVERLAP = timedelta(minutes=10)
#: A new connection looks this far back on its first run.
RECONCILE_FIRST_LOOKBACK = timedelta(days=2)


def reconcile_postings(connection_id: str) -> str:
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
        return "skipped: another reconciliation of this connection is running"
    try:
        return _reconcile(connection_id)
    finally:
        try:
            lock.release()
        except LockError:  # expired meanwhile: the next run may already hold a new one
            pass


def _reconcile(connection_id: str) -> str:
    connection = db.session.get(Connection, connection_id)
    if connection is None or not connection.usable:
        return "skipped: connection not usable"
    links = list(db.session.scalars(db.select(PostingLink).filter_by(
        organization_id=connection.organization_id)))
    if not links:
        return "no links"
    cursor = db.session.get(ReconcileCursor, connection_id)
    started = utcnow()
    since = (started - RECONCILE_FIRST_LOOKBACK) if cursor is None else \
        _from_ms(cursor.updated_at_ms) - RECONCILE_OVERLAP
    client = LeverClient(connection_id)
    seen = acted = 0
    for posting_id, stage_id in sorted({(l.posting_id, l.stage_id) for l in links}):
        for opp in client.list_opportunities(posting_id=posting_id, stage_id=stage_id,
                                             updated_at_start=since, expand_applications=True):
            seen += 1
            outcome = process_stage_change(connection_id, opp["id"], stage_id, via="reconcile",
                                           opportunity=opp)
            acted += "invited to" in outcome
    cursor = cursor or ReconcileCursor(connection_id=connection_id, updated_at_ms=0)
    cursor.updated_at_ms = _to_ms(started)
    cursor.ran_at = started
    db.session.add(cursor)
    db.session.commit()
    return f"checked {seen} opportunities, invited {acted}"


def _to_ms(value) -> int:
    from calendar import timegm

    return timegm(value.timetuple()) * 1000 + value.microsecond // 1000


def _from_ms(ms: int):
    from datetime import datetime

    return datetime.utcfromtimestamp(ms / 1000)
