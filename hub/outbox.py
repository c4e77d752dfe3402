"""Durable work: everything that must happen exactly once is a row with a status, a lease and a job.

A webhook delivery to act on, an email to send, a note or a tag to write, a stage to move to:
each is a row of a model that mixes in :class:`DurableWork`, and a job declared with
:func:`durable`::

    @durable(Note, queue="default")
    def post_note(note: Note) -> Outcome:
        ...                      # do it; raise to retry, return an outcome when done

    schedule(post_note, Note(...))          # in the caller's transaction; enqueued after commit

This module owns the life cycle for every kind:

- **schedule**: the row is added to the caller's transaction and its job is enqueued after the
  commit (never before: the job must find its row). A failed enqueue loses nothing: the row is
  pending, and the sweeper finds it.
- **claim**: a run takes the row under a lease (``running``, one more attempt) and commits that
  before it acts, so the attempt is on record before the provider can act. Of two runs, one
  claims; the other returns ``InFlight`` or ``AlreadyDone``. A run that dies is retried by RQ
  under the same job id once its heartbeat lapses, and that retry takes the row over; any other
  run waits for the lease to run out. A run that finds ``attempts > 1`` must check whether an
  earlier attempt already acted (e.g. find its note in the provider) before acting again.
- **finish**: the outcome is recorded in the same transaction as the work's own writes.
  ``ConnectionUnusable`` pauses the row; ``Refused`` fails it at once (retrying cannot help);
  ``Defer`` gives the worker back and runs it again later without spending a retry; any other
  exception is retried with the hub's growing intervals and fails the row after the last.
- **sweep**: one periodic job, for every kind, enqueues again what is pending or whose lease ran
  out and has no live job (Redis lost it, or it failed for good), and gives up after the kind's
  ``max_attempts``.
- **resume**: when a connection is restored, its paused rows of every kind run again.

Job ids derive from the kind and the row id (``job_id``); job arguments are the row id only.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from redis.exceptions import RedisError
from rq import Retry, get_current_job
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from .extensions import db, get_redis
from .jobs import Defer, after_commit, deferred_retry, enqueue, job, job_statuses, safe_job_id
from .outcomes import AlreadyDone, Failed, InFlight, Outcome, Paused
from .plugin import ConnectionUnusable, PeriodicJob

log = logging.getLogger("hub.outbox")

#: Statuses of durable work. ``pending``: waiting for its job; ``running``: claimed under a
#: lease; ``paused``: waiting for its connection; the rest are final.
PENDING, RUNNING, PAUSED, DONE, SKIPPED, FAILED = "pending", "running", "paused", "done", "skipped", "failed"
STATUSES = (PENDING, RUNNING, PAUSED, DONE, SKIPPED, FAILED)
OPEN = (PENDING, RUNNING, PAUSED)
FINAL = (DONE, SKIPPED, FAILED)

#: Sweeps are answered in batches of this size (each kind, each run).
SWEEP_BATCH = 500


def utcnow() -> datetime:
    from .models import utcnow as now

    return now()


class Refused(Exception):
    """The provider refused the work for a reason retrying cannot fix (a 4xx that is not 429).

    The row fails at once with this message, shown to the admin with a Retry button.
    """


class WorkFailed(RuntimeError):
    """Raised to RQ when a run failed and will be retried: names the work, never its data."""

    #: ``run`` logged the attempt's failure (kind, row, error type) before raising this.
    already_logged = True


class DurableWork:
    """Columns of a row of durable work. Mix into a model; see the module docstring."""

    #: pending → running → done | skipped | failed; paused while the connection is unusable.
    status: Mapped[str] = mapped_column(sa.String(20), default=PENDING)
    #: Runs that claimed the row (a run after a crash sees more than one).
    attempts: Mapped[int] = mapped_column(default=0)
    #: When the row became pending: the sweeper's clock (``Defer`` sets it in the future).
    due_at: Mapped[datetime] = mapped_column(default=lambda: utcnow())
    #: Until when the run that claimed it owns it.
    lease_until: Mapped[datetime | None]
    #: The last failure, in words (redacted), for the admin.
    error: Mapped[str | None] = mapped_column(sa.Text)
    #: The outcome's code (``hub.outcomes``) and its words.
    outcome: Mapped[str | None] = mapped_column(sa.String(40))
    summary: Mapped[str | None] = mapped_column(sa.Text)
    finished_at: Mapped[datetime | None]

    @declared_attr.directive
    def __table_args__(cls):
        # The sweeper's question, "what is open and due", answered from an index whatever the
        # size of the history.
        extra = tuple(getattr(cls, "__extra_table_args__", ()))
        return (sa.Index(f"ix_{cls.__tablename__}_work", "status", "due_at"),
                sa.CheckConstraint(f"status IN {STATUSES!r}", name="work_status"), *extra)


@dataclass
class WorkKind:
    """One kind of durable work: a model, the function that performs one row, and its policy."""

    #: The job's dotted path; also the kind's name in logs and job ids.
    name: str
    model: type
    perform: Callable[[DurableWork], Outcome]
    queue: str
    #: How long a run owns a row before another may take it (longer than the job can run).
    lease: timedelta
    #: Runs after which the sweeper gives up and fails the row.
    max_attempts: int
    #: The registered job that runs one row (set by ``durable``).
    runner: Callable | None = None
    #: What one row is, in an admin's words ("ATS note"); from the function's name by default.
    title: str = ""
    #: Scheduled by another job in a worker, the row is run right after that job, in the same
    #: worker, instead of as a job of its own (no trip through the queue: an invitation's email
    #: goes out with it). Any failure, or a wait, hands it to its own job as usual.
    follow_on: bool = False
    #: Admission, called as a row is scheduled (in the scheduling transaction, in whatever
    #: process schedules it) with the row and its job id: reserve what its run will need (e.g. an
    #: account's rate-limit tokens, kept under the job id) and return in how many seconds it
    #: may run. Its job is then enqueued for that moment and runs once, instead of running now
    #: only to be given back (``Defer``) and run again. None: enqueued at once.
    admit: Callable[[DurableWork, str], float] | None = None
    #: Readiness, called in the row's own job before it is claimed, with the row's connection id:
    #: raise ``Defer`` when the run could only be given back now (e.g. no rate-limit token within
    #: its horizon). The job is then rescheduled without claiming the row or recording anything:
    #: a give-back costs a read instead of two write transactions (docs/performance.md, B5).
    ready: Callable[[str], None] | None = None
    #: What rows are about, for Settings › Work needing attention: called with rows of one
    #: organization, returns ``{row id: (words, link or None)}`` ("Ada Lovelace · Backend
    #: Engineer", the candidate in the ATS). None: the page shows the kind and the reason only.
    describe: Callable[[list], dict] | None = None

    @property
    def has_connection(self) -> bool:
        return hasattr(self.model, "connection_id")

    def job_id(self, row_id) -> str:
        return safe_job_id(self.name, row_id)


def durable(model: type, *, queue: str = "default", lease: timedelta = timedelta(minutes=6),
            max_attempts: int = 12, timeout: int | None = None, title: str = "", follow_on: bool = False,
            admit: Callable[[DurableWork, str], float] | None = None,
            ready: Callable[[str], None] | None = None, describe: Callable[[list], dict] | None = None):
    """Declare a kind of durable work: ``perform(row) -> Outcome`` for rows of ``model``.

    Returns the registered job (called with a row id), with ``.kind`` attached. List it in the
    plugin's ``jobs`` so its rows are swept and resumed.
    """
    def register(perform: Callable) -> Callable:
        kind = WorkKind(name=f"{perform.__module__}.{perform.__qualname__}", model=model,
                        perform=perform, queue=queue, lease=lease, max_attempts=max_attempts,
                        title=title or perform.__name__.replace("_", " ").capitalize(),
                        follow_on=follow_on, admit=admit, ready=ready, describe=describe)

        def runner(row_id):
            return run(kind, row_id)

        runner.__module__, runner.__qualname__ = perform.__module__, perform.__qualname__
        runner.__name__, runner.__doc__ = perform.__name__, perform.__doc__
        registered = job(queue, timeout=timeout)(runner)
        registered.kind = kind
        kind.runner = registered
        return registered

    return register


def kind_of(func: Callable) -> WorkKind:
    kind = getattr(func, "kind", None)
    if not isinstance(kind, WorkKind):
        raise TypeError(f"{func!r} is not durable work: declare it with @hub.outbox.durable")
    return kind


def active_kinds(app=None) -> list[WorkKind]:
    """The kinds of the hub and of every loaded plugin (their tables exist)."""
    return list((app or current_app).extensions.get("hub.work_kinds", {}).values())


def register_kind(app, func: Callable) -> None:
    kind = kind_of(func)
    app.extensions.setdefault("hub.work_kinds", {})[kind.name] = kind


# --- schedule ---------------------------------------------------------------------------------

def schedule(func: Callable, row: DurableWork, *, at_front: bool = False) -> DurableWork:
    """Add ``row`` to the current transaction; its job is enqueued once the transaction commits."""
    kind = kind_of(func)
    row.status, row.due_at = PENDING, utcnow()
    db.session.add(row)
    db.session.flush()
    delay = _admit(kind, row)
    if delay > 0:
        row.due_at = utcnow() + timedelta(seconds=delay)
    _enqueue_after_commit(kind, row.id, at_front=at_front, delay=delay,
                          connection_id=getattr(row, "connection_id", None))
    return row


def _admit(kind: WorkKind, row: DurableWork) -> float:
    """Seconds until the row's job may run, by its kind's admission (0: now)."""
    if kind.admit is None or current_app.config.get("HUB_QUEUE_MODE") == "inline":
        return 0.0
    try:
        return max(0.0, float(kind.admit(row, kind.job_id(row.id))))
    except RedisError as exc:
        # Nothing reserved: the job runs now and reserves for itself (or is given back).
        log.warning("hub.outbox.not_admitted kind=%s row=%s error=%s", kind.name, row.id, type(exc).__name__)
        return 0.0


def schedule_once(func: Callable, row: DurableWork, **options) -> bool:
    """Like ``schedule``, unless a row with the same unique key exists: then nothing changes.

    Returns True when this call stored the row. Runs in a savepoint, so a duplicate leaves the
    caller's transaction (its other rows) intact.
    """
    try:
        with db.session.begin_nested():
            schedule(func, row, **options)
        return True
    except IntegrityError:
        return False


#: A job's ``meta`` key for its row's connection id, for a kind's ``ready`` (an id we made).
META_CONNECTION = "hub_connection"


def _enqueue_after_commit(kind: WorkKind, row_id, at_front: bool = False, delay: float = 0.0,
                          connection_id: str | None = None) -> None:
    options = {"job_id": kind.job_id(row_id)}
    if kind.ready is not None and connection_id:
        # ``ready`` is asked before the row is read: its job carries the connection's id.
        options["meta"] = {META_CONNECTION: connection_id}
    if at_front:
        options["at_front"] = True
    if delay > 0:
        options["delay"] = delay
    elif kind.follow_on:
        options["follow_on"] = lambda row_id, kind=kind: run_here(kind, row_id)
    after_commit(kind.runner, row_id, **options)


def run_here(kind: WorkKind, row_id) -> bool:
    """Run one row in this process, right after the job that scheduled it (``follow_on``).

    True when that settled it (done, skipped, failed for good, paused); False hands it to its
    own job: it failed (the attempt counts, its job retries it) or must wait (it does not).
    """
    try:
        outcome = run(kind, row_id, here=True)
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.warning("hub.outbox.follow_on_failed kind=%s row=%s", kind.name, row_id, exc_info=True)
        return False
    return outcome is not None


def enqueue_row(kind: WorkKind, row_id, **options) -> bool:
    """Enqueue the job of one row now; False when Redis is unreachable (the sweeper tries later)."""
    try:
        enqueue(kind.runner, row_id, job_id=kind.job_id(row_id), **options)
        return True
    except RedisError as exc:
        log.warning("hub.outbox.not_enqueued kind=%s row=%s error=%s", kind.name, row_id, type(exc).__name__)
        return False


# --- claim, perform, finish -------------------------------------------------------------------

def run(kind: WorkKind, row_id, here: bool = False) -> Outcome | Retry | None:
    """Claim the row, perform it, record the outcome. The job of every kind calls this.

    ``here``: run by ``run_here`` inside another row's job; a failure or a wait leaves the row
    pending for its own job and returns None.
    """
    model = kind.model
    rq_job = get_current_job()
    if kind.ready is not None and rq_job is not None and not here and kind.has_connection:
        wait = _not_ready_for(kind, row_id, (rq_job.meta or {}).get(META_CONNECTION))
        if wait is not None:
            return deferred_retry(wait)
    now = utcnow()
    # RQ runs one execution of a job id at a time: a run of the row's own job that finds the row
    # running is that job again after its earlier execution died (RQ retries an abandoned job
    # once its heartbeat lapses), so it takes over at once. Any other run waits out the lease.
    taken_over = sa.and_(model.status == RUNNING, model.lease_until < now) \
        if rq_job is None or rq_job.id != kind.job_id(row_id) else model.status == RUNNING
    # One round trip claims the row and loads it.
    row = db.session.execute(
        sa.update(model).where(model.id == row_id, sa.or_(model.status == PENDING, taken_over))
        .values(status=RUNNING, attempts=model.attempts + 1, lease_until=now + kind.lease)
        .returning(model).execution_options(synchronize_session=False, populate_existing=True)).scalar_one_or_none()
    session = db.session()
    # The attempt is on record before anything is done. The row just read stays loaded: the
    # commit need not expire it (another run cannot change it while the lease holds).
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire
    if row is None:
        row = db.session.get(model, row_id)
        if row is None:
            return Failed(reason="no such row")
        if row.status in FINAL:
            return AlreadyDone()
        if row.status == PAUSED:
            return Paused(reason=row.error or "")
        return InFlight()
    connection_id = getattr(row, "connection_id", None)
    try:
        if connection_id is not None:
            _check_usable(connection_id)
        outcome = kind.perform(row)
    except ConnectionUnusable as exc:
        db.session.rollback()
        _set(kind, row_id, PAUSED, error=exc.reason or "the connection is not usable")
        return Paused(reason=exc.reason)
    except Refused as exc:
        db.session.rollback()
        outcome = Failed(reason=_describe(exc, with_type=False))
        _set(kind, row_id, FAILED, error=outcome.reason, outcome=outcome.code, summary=outcome.describe(),
             finished_at=utcnow())
        log.warning("hub.outbox.refused kind=%s row=%s", kind.name, row_id)
        return outcome
    except Defer as exc:
        db.session.rollback()
        if here:
            _set(kind, row_id, PENDING, attempts=kind.model.attempts - 1)
            return None
        seconds = max(1, math.ceil(exc.seconds))
        # Not a failure: the claim's attempt is given back, and the sweeper leaves the row alone
        # until it is due (the rescheduled job runs it then).
        _set(kind, row_id, PENDING, due_at=utcnow() + timedelta(seconds=seconds),
             attempts=kind.model.attempts - 1)
        if rq_job is None:
            raise  # inline: nothing can run it later
        return deferred_retry(exc.seconds)
    except Exception as exc:
        db.session.rollback()
        if here:
            _set(kind, row_id, PENDING, error=_describe(exc))
            log.warning("hub.outbox.attempt_failed kind=%s row=%s error=%s last=False", kind.name, row_id,
                        type(exc).__name__)
            return None
        last = rq_job is None or not rq_job.retries_left
        _set(kind, row_id, FAILED if last else PENDING, error=_describe(exc),
             finished_at=utcnow() if last else None, outcome="failed" if last else None)
        log.warning("hub.outbox.attempt_failed kind=%s row=%s error=%s last=%s", kind.name, row_id,
                    type(exc).__name__, last)
        if rq_job is None:
            raise
        raise WorkFailed(f"{kind.name} row {row_id}: {type(exc).__name__}") from None
    finish(row, outcome)
    return outcome


def _not_ready_for(kind: WorkKind, row_id, connection_id: str | None = None) -> float | None:
    """Seconds to give the job back for, asked before its row is claimed; None: go on.

    ``connection_id``: carried by the job (``META_CONNECTION``), so a give-back costs no read of
    the row (a read and a rollback were ~4 % of a busy worker's CPU: docs/performance.md, B5);
    a job enqueued without it (by the sweeper) reads it from the row.
    """
    if connection_id is None:
        found = db.session.execute(sa.select(kind.model.connection_id, kind.model.status)
                                   .where(kind.model.id == row_id)).first()
        db.session.rollback()
        if found is None or found.connection_id is None or found.status not in (PENDING, RUNNING):
            return None  # nothing to wait for: the claim says what became of the row
        connection_id = found.connection_id
    try:
        kind.ready(connection_id)
    except Defer as exc:
        return exc.seconds
    except RedisError as exc:  # the run decides, as it would have without this check
        log.warning("hub.outbox.ready_unknown kind=%s row=%s error=%s", kind.name, row_id, type(exc).__name__)
    return None


def finish(row: DurableWork, outcome: Outcome) -> None:
    """Record the outcome on the row, in the current transaction (committed by the job)."""
    row.status = outcome.status if outcome.status in FINAL else DONE
    row.outcome, row.summary = outcome.code, outcome.describe()[:2000]
    # Work that returns ``Failed`` (after writing its own lines) keeps the reason where the
    # card and the Work page read it, as a ``Refused`` does.
    row.error = outcome.reason[:2000] if isinstance(outcome, Failed) and outcome.reason else None
    row.lease_until, row.finished_at = None, utcnow()


def _check_usable(connection_id: str) -> None:
    from .models import Connection

    connection = db.session.get(Connection, connection_id)
    if connection is None or not connection.usable:
        raise ConnectionUnusable(connection_id, "no such connection" if connection is None
                                 else connection.unusable_reason)


def _describe(exc: Exception, with_type: bool = True) -> str:
    from .security import redact

    text = f"{type(exc).__name__}: {exc}" if with_type else str(exc)
    # An exception's text stays free of a provider's words (it reaches logs and RQ); the admin's
    # own page gets them from ``detail`` when the exception has one.
    detail = getattr(exc, "detail", "")
    if detail:
        text = f"{text}: {detail}"
    return redact(text)[:1000]


def _set(kind: WorkKind, row_id, status: str, **values) -> None:
    model = kind.model
    values.setdefault("lease_until", None)
    db.session.execute(sa.update(model).where(model.id == row_id).values(status=status, **values)
                       .execution_options(synchronize_session=False))
    db.session.commit()


# --- requeue, retry, sweep, resume ------------------------------------------------------------

def requeue(kind: WorkKind, where) -> int:
    """Set the rows selected by ``where`` (a SQL condition) pending and enqueue their jobs now."""
    model = kind.model
    ids = list(db.session.scalars(sa.select(model.id).where(where).order_by(model.id).limit(10_000)))
    if not ids:
        return 0
    db.session.execute(sa.update(model).where(model.id.in_(ids)).values(
        status=PENDING, due_at=utcnow(), error=None, lease_until=None, finished_at=None)
        .execution_options(synchronize_session=False))
    db.session.commit()
    for row_id in ids:
        enqueue_row(kind, row_id)
    return len(ids)


def retry_failed(func_or_kind, where=None) -> int:
    """Run failed rows again (an admin's Retry), with their full retries."""
    kind = func_or_kind if isinstance(func_or_kind, WorkKind) else kind_of(func_or_kind)
    condition = kind.model.status == FAILED
    return requeue(kind, condition if where is None else sa.and_(condition, where))


@job("sync", retry=False)
def sweep() -> dict:
    """Periodic: for every kind, enqueue again the open work whose job is gone.

    - pending rows due more than HUB_SWEEP_AFTER_SECONDS ago (Redis was down when they were
      stored, or lost their job since);
    - running rows whose lease ran out (the worker died mid-run);
    - paused rows whose connection is usable again (in case ``connection_restored`` was missed).

    A row whose job is still queued, running or scheduled (a retry waiting) is left alone; one at
    its kind's ``max_attempts`` fails for good, visible to the admin.
    """
    counts = {"enqueued": 0, "resumed": 0, "gave_up": 0}
    for kind in active_kinds():
        for key, value in _sweep_kind(kind).items():
            counts[key] += value
    return counts


def _sweep_kind(kind: WorkKind) -> dict:
    model = kind.model
    now = utcnow()
    grace = timedelta(seconds=current_app.config["HUB_SWEEP_AFTER_SECONDS"])
    rows = db.session.execute(sa.select(model.id, model.attempts).where(sa.or_(
        sa.and_(model.status == PENDING, model.due_at < now - grace),
        sa.and_(model.status == RUNNING, model.lease_until < now),
    )).order_by(model.due_at).limit(SWEEP_BATCH)).all()
    counts = {"enqueued": 0, "resumed": 0, "gave_up": 0}
    statuses = job_statuses([kind.job_id(r.id) for r in rows])
    for row_id, attempts in rows:
        if statuses.get(kind.job_id(row_id)) in ("queued", "started", "scheduled", "deferred"):
            continue
        if attempts >= kind.max_attempts:
            _set(kind, row_id, FAILED, finished_at=now, outcome="failed",
                 error=f"gave up after {attempts} attempts")
            counts["gave_up"] += 1
            continue
        if statuses.get(kind.job_id(row_id)) is not None:
            # The job ended (failed for good, or stopped) while the row stayed open: the run
            # that would have recorded it died. A new run starts with its full retries.
            pass
        if not _first_to_sweep(kind.job_id(row_id), grace):
            continue
        counts["enqueued"] += enqueue_row(kind, row_id)
    if kind.has_connection:
        from .models import Connection

        usable = sa.select(Connection.id).where(Connection.usable)
        counts["resumed"] += requeue(kind, sa.and_(model.status == PAUSED, model.connection_id.in_(usable)))
    db.session.rollback()
    return counts


def _first_to_sweep(job_id: str, grace: timedelta) -> bool:
    """Whether this sweep enqueues the row's job again: two sweeps that overlap (a slow one and
    the next) both see it missing, and a job id enqueued twice runs twice at once, each run
    taking the row over from the other (``run``). The first sweep marks it for the grace."""
    try:
        return bool(get_redis().set(f"hub:swept:{job_id}", 1, nx=True,
                                    ex=max(int(grace.total_seconds()), 5)))
    except RedisError:
        return False  # Redis is away: nothing can be enqueued either


@job("webhooks")
def resume_connection(connection_id: str) -> dict:
    """Run again every kind's paused work of a connection that works again."""
    from .models import Connection

    connection = db.session.get(Connection, connection_id)
    if connection is None or not connection.usable:
        return {"resumed": 0}
    resumed = 0
    for kind in active_kinds():
        if kind.has_connection:
            resumed += requeue(kind, sa.and_(kind.model.connection_id == connection_id,
                                             kind.model.status == PAUSED))
    return {"resumed": resumed}


def open_work_of_connection(connection_id: str) -> list[tuple[str, int]]:
    """(title, count) of every kind's rows still to do for one connection (pending, running or
    paused), for the confirmation an admin reads before disconnecting it."""
    found = []
    for kind in active_kinds():
        if not kind.has_connection:
            continue
        count = db.session.scalar(sa.select(sa.func.count()).select_from(kind.model).where(
            kind.model.connection_id == connection_id, kind.model.status.in_(OPEN)))
        if count:
            found.append((kind.title, count))
    return found


def failed_work_of_connection(connection_id: str, since: datetime, skip=()) -> list[tuple[str, int, str]]:
    """(title, count, the latest error) of every kind's rows of one connection that failed for
    good since ``since`` and were not retried, for the card's alert (kinds in ``skip`` left out)."""
    found = []
    for kind in active_kinds():
        if not kind.has_connection or kind.model in skip:
            continue
        model = kind.model
        mine = sa.and_(model.connection_id == connection_id, model.status == FAILED, model.finished_at >= since)
        count = db.session.scalar(sa.select(sa.func.count()).select_from(model).where(mine))
        if count:
            error = db.session.scalar(sa.select(model.error).where(mine).order_by(model.finished_at.desc()).limit(1))
            found.append((kind.title, count, error or ""))
    return found


def work_counts(organization_id: int) -> dict:
    """How much of an organization's durable work, of every kind (emails, deliveries, each
    plugin's notes and tags…), waits, failed for good, or is paused for its connection."""
    counts = {"queued": 0, "failed": 0, "paused": 0}
    for kind in active_kinds():
        mine = of_organization(kind, organization_id)
        if mine is None:
            continue
        model = kind.model
        for status, count in db.session.execute(sa.select(model.status, sa.func.count()).where(
                mine, model.status.in_((PENDING, RUNNING, FAILED, PAUSED))).group_by(model.status)).all():
            counts["failed" if status == FAILED else "paused" if status == PAUSED else "queued"] += count
    return counts


def of_organization(kind: WorkKind, organization_id: int):
    """The SQL condition "this row belongs to the organization", or None when a kind's rows name
    no organization (such a kind is never shown to one)."""
    model = kind.model
    if hasattr(model, "organization_id"):
        return model.organization_id == organization_id
    if hasattr(model, "connection_id"):
        from .models import Connection

        return model.connection_id.in_(
            sa.select(Connection.id).where(Connection.organization_id == organization_id))
    return None


def counts_by_status(kind_or_func, where=None) -> dict[str, int]:
    """How many rows of a kind are in each status (``where``: a SQL condition, e.g. one org)."""
    kind = kind_or_func if isinstance(kind_or_func, WorkKind) else kind_of(kind_or_func)
    query = sa.select(kind.model.status, sa.func.count()).group_by(kind.model.status)
    if where is not None:
        query = query.where(where)
    counts = dict.fromkeys(STATUSES, 0)
    counts.update(dict(db.session.execute(query).all()))
    return counts


def _on_connection_restored(sender, connection=None, **extra) -> None:
    # A job, not work in the caller's request: the caller's transaction stays the caller's.
    # The sender commits the restored connection before sending; the sweeper is the fallback.
    if connection is None:
        return
    try:
        enqueue(resume_connection, connection.id, job_id=safe_job_id("resume", connection.id))
    except RedisError:
        log.warning("hub.outbox.resume_not_enqueued connection=%s (the sweeper resumes it)", connection.id)


#: For the hub's scheduler.
HUB_PERIODIC_JOBS = [PeriodicJob(sweep, timedelta(seconds=30), queue="sync")]


def init_app(app) -> None:
    from .signals import connection_restored

    connection_restored.connect(_on_connection_restored, weak=False)
