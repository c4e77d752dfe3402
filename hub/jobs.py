"""Jobs: the ``@job`` decorator that registers them, named RQ queues, enqueueing and retries.

A job is a module-level function decorated with :func:`job`. It is referenced as that function
everywhere (``enqueue(post_note, 42)``), never as a dotted string written by hand; the decorator
records the dotted path RQ imports in a worker. Its arguments are ids and keys only (checked at
enqueue: no text an organization controls reaches a job's arguments, description or result,
which the operators' dashboard prints unescaped), it runs in one database transaction opened at
its entry and committed when it returns, and it returns a typed outcome (``hub.outcomes``) of
which RQ keeps only the codes.

Work that must happen exactly once (a delivery, an email, a note…) is a row with a job:
``hub.outbox``, built on this module. The worker and its scheduler are in ``hub.worker``.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app, g, has_app_context
from redis.exceptions import RedisError
from rq import Queue, Retry, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from .extensions import db, get_redis
from .outcomes import Outcome, Paused

log = logging.getLogger("hub.jobs")


class ConnectionUnusable(Exception):
    """Raised by a job whose connection is revoked or disconnected.

    The hub then pauses that work (nothing is dropped) and runs it again when the connection is
    restored (signal ``connection_restored``).
    """

    def __init__(self, connection_id: str, reason: str = ""):
        super().__init__(f"connection {connection_id} is not usable: {reason}")
        self.connection_id = connection_id
        self.reason = reason


#: Queues, most urgent first; a worker listens to all of them in this order. ``mail`` comes
#: first: an email is the outcome a candidate waits for and costs no API call, so in a bulk move
#: (or with many organizations' webhooks queued) the emails of work already done go out before
#: more webhooks are taken (B2/B4 in docs/performance.md).
QUEUES = ("mail", "webhooks", "default", "sync")

#: Default retry policy: growing intervals (seconds) with jitter, applied at enqueue time.
RETRY_INTERVALS = (5, 15, 60, 300, 900)

#: Settings of the queue and scheduler, read from the environment like the hub's own config.
CONFIG = {
    # How often a worker proves it is alive while a job runs (seconds).
    "HUB_JOB_MONITORING_INTERVAL": 5,
    # A running job counts as abandoned this long after its worker's last heartbeat.
    "HUB_JOB_HEARTBEAT_GRACE": 10,
    # A worker's work process whose resident memory passed this after a job is replaced (MB; 0: never).
    "HUB_WORKER_MAX_RSS_MB": 200,
    # A work process is replaced after this many jobs (0: never), so a slow leak stays bounded.
    "HUB_WORKER_MAX_JOBS": 50000,
    # RQ's own log lines in a worker: WARNING keeps a healthy worker quiet (INFO: four lines a job).
    "HUB_WORKER_LOG_LEVEL": "WARNING",
    # How often each worker's scheduler thread wakes up (seconds).
    "HUB_SCHEDULER_TICK": 1.0,
    # How often the scheduler reads which connections are usable, for their periodic jobs (seconds):
    # a connection made meanwhile gets its first periodic runs within this.
    "HUB_SCHEDULER_CONNECTIONS_EVERY": 10.0,
    # Durable work still pending this many seconds after it was due, without a job, is enqueued
    # again by the sweeper (Redis was down when it was stored, or lost the job since).
    "HUB_SWEEP_AFTER_SECONDS": 10,
    # Modules whose `HUB_PERIODIC_JOBS` list the scheduler runs (missing modules are ignored).
    "HUB_PERIODIC_JOB_MODULES": "hub.outbox,hub.connections,hub.assessments.services",
    # Interval overrides, "module.func=seconds,…" (demos and tests run the sweeper faster).
    "HUB_PERIODIC_INTERVALS": "",
    # Seconds between the retries of a failing job (before jitter).
    "HUB_RETRY_INTERVALS": ",".join(str(i) for i in RETRY_INTERVALS),
}

#: What a job argument may look like: an integer, or a short id or key of letters, digits,
#: ``_`` and ``-`` (uuids, provider ids, plugin keys). Free text never matches (no spaces).
JOB_ARGUMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")


class JobArgumentError(TypeError):
    """A job was enqueued with an argument that is not an id or a key."""


class JobFailed(RuntimeError):
    """What RQ stores when a job raised: the job's name and the exception's type, no more.

    An exception's text may quote a provider's answer, a customer's data or an SQL statement's
    parameters, and the operators' dashboard prints RQ's traceback unescaped. The whole
    exception goes to the worker's log (redacted, ``hub.security``) instead.
    """


class Defer(Exception):
    """The work may not run yet (no rate-limit token, ``Retry-After``): run it again in ``seconds``.

    The worker is given back at once and the attempt does not count as a failure: a job that
    raises it is scheduled again for when it may run (durable work: ``hub.outbox``).
    """

    def __init__(self, seconds: float, reason: str = ""):
        super().__init__(reason or f"deferred {seconds:.1f}s")
        self.seconds = max(0.0, float(seconds))
        self.reason = reason


@dataclass(frozen=True)
class JobSpec:
    """What the hub knows of one registered job."""

    #: The dotted path RQ imports in a worker (``module.function``).
    name: str
    #: The queue it goes to unless the caller names another.
    queue: str
    #: Retried with the hub's growing intervals when it raises.
    retry: bool
    #: Seconds before RQ stops it (``None``: the queue's default).
    timeout: int | None


#: Every registered job by dotted path. Jobs are code, like the modules that define them, so
#: the registry is the process's; which jobs an app may run follows from its plugins.
_JOBS: dict[str, JobSpec] = {}


def job(queue: str = "default", *, retry: bool = True, timeout: int | None = None):
    """Register a module-level function as a job.

    The wrapper opens the job's one transaction: it commits when the function returns and rolls
    back when it raises. It gives RQ only the codes of the outcome (see ``public_result``).
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; queues are {', '.join(QUEUES)}")

    def register(func: Callable) -> Callable:
        name = f"{func.__module__}.{func.__qualname__}"
        if "<locals>" in name:
            raise TypeError(f"{name}: a job must be a module-level function, or a worker cannot import it")
        for param in inspect.signature(func).parameters.values():
            if param.kind in (param.VAR_KEYWORD, param.KEYWORD_ONLY):
                raise TypeError(f"{name}: jobs take positional ids and keys only ({param.name})")

        @functools.wraps(func)
        def run(*args):
            try:
                result = func(*args)
                db.session.commit()
            except Defer as exc:
                db.session.rollback()
                if get_current_job() is None:
                    raise
                # Given back, not failed: RQ schedules the same job again (no retry spent).
                result = deferred_retry(exc.seconds)
            except ConnectionUnusable as exc:
                db.session.rollback()
                if get_current_job() is None:
                    raise
                # An expected state, shown on the card: one line, no traceback, nothing to retry
                # (reconnecting resumes the connection's work).
                log.warning("hub.jobs.connection_unusable job=%s connection=%s", name, exc.connection_id)
                result = Paused(reason=exc.reason)
            except Exception as exc:
                db.session.rollback()
                if get_current_job() is None:
                    raise  # called in this process (inline, tests): the caller sees it whole
                # Durable work logged its cause already, in one line (``already_logged``): its
                # traceback here would show only where that was turned into this failure.
                log.warning("hub.jobs.failed job=%s error=%s", name, type(exc).__name__,
                            exc_info=not getattr(exc, "already_logged", False))
                raise JobFailed(f"{name} failed: {type(exc).__name__}") from None
            except BaseException:
                db.session.rollback()
                raise
            finally:
                run_follow_ons()
                run_inline_jobs()
            return public_result(result)

        run.job = JobSpec(name=name, queue=queue, retry=retry, timeout=timeout)
        _JOBS[name] = run.job
        return run

    return register


def deferred_retry(seconds: float) -> Retry:
    """What a job given back (``Defer``) returns to RQ: run again in ``seconds``.

    RQ schedules by the whole second; the worker then moves the job to its exact time
    (``hub.worker``), so jobs given back together do not all come back at the same instant.
    """
    g.hub_defer_until = time.time() + seconds
    return Retry(max=1_000_000, interval=max(1, math.ceil(seconds)))


def spec_of(func: Callable) -> JobSpec:
    """The registration of a job function; ``TypeError`` for a function that is not a job."""
    spec = getattr(func, "job", None)
    if not isinstance(spec, JobSpec):
        raise TypeError(f"{func!r} is not a job: decorate it with @hub.jobs.job")
    return spec


def registered_jobs() -> dict[str, JobSpec]:
    return dict(_JOBS)


def public_result(result):
    """What RQ keeps of a job's return value: codes and numbers, never an organization's text."""
    if result is None or isinstance(result, (bool, int, float)):
        return result
    if isinstance(result, Retry):
        return result  # RQ schedules the job again (``hub.outbox.Defer``); it holds no text
    if isinstance(result, Outcome):
        return result.public()
    if isinstance(result, dict):
        return {str(k): v for k, v in result.items() if isinstance(v, (bool, int, float))}
    return type(result).__name__


def check_arguments(name: str, args) -> None:
    for value in args:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or \
                isinstance(value, str) and not JOB_ARGUMENT.fullmatch(value):
            raise JobArgumentError(f"{name}: job arguments are ids and keys only, not {type(value).__name__} "
                                   f"{str(value)[:40]!r}")


def safe_job_id(*parts) -> str:
    """A deterministic RQ job id from parts (RQ allows letters, digits, ``_`` and ``-`` only).

    Long ids are shortened to a hash, so a key of any length gives an id of bounded size.
    """
    text = re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(str(p) for p in parts))
    if len(text) > 120:
        text = text[:60] + "-" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return text


def retry_policy(intervals=None, jitter: float = 0.2) -> Retry:
    if intervals is None:
        intervals = current_app.config.get("HUB_RETRY_INTERVALS") or RETRY_INTERVALS
    # Jitter spreads retries of a burst of failures so they do not hit a provider at one second.
    spread = [max(1, int(i * random.uniform(1 - jitter, 1 + jitter))) for i in intervals]
    return Retry(max=len(spread), interval=spread)


def get_queue(name: str = "default", app=None) -> Queue:
    """The RQ queue ``name`` of the app, built once per app (building one checks its serializer
    against a typing Protocol: about a third of an enqueue's CPU, docs/performance.md B1)."""
    app = app or current_app
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}; queues are {', '.join(QUEUES)}")
    queues = app.extensions.setdefault("hub.queues", {})
    queue = queues.get(name)
    if queue is None:
        queue = queues[name] = Queue(name, connection=get_redis(app), serializer=JSONSerializer,
                                     default_timeout=app.config.get("HUB_JOB_TIMEOUT", 300))
    return queue


def _options(spec: JobSpec, options: dict) -> dict:
    retry = options.pop("retry", spec.retry)
    if retry is True:
        retry = retry_policy()
    options["retry"] = retry or None
    options.setdefault("failure_ttl", 7 * 24 * 3600)
    if spec.timeout is not None:
        options.setdefault("job_timeout", spec.timeout)
    return options


def enqueue(func: Callable, *args, queue: str | None = None, job_id: str | None = None,
            fresh: bool = False, delay: float = 0.0, **options):
    """Enqueue the job ``func`` with ids as arguments.

    With ``job_id`` a second enqueue of the same id while the first is still known to RQ
    (queued, running, scheduled) is ignored, so callers can enqueue freely; one that failed for
    good is started again with its full retries. ``fresh=True`` skips that check (one Redis
    round trip) when the caller knows the id is new. With ``delay`` (seconds) it is scheduled for
    then, to the fraction of a second. In ``HUB_QUEUE_MODE=inline`` the job runs in this process
    at the next safe point instead (``run_inline_jobs``).
    """
    spec = spec_of(func)
    check_arguments(spec.name, args)
    if current_app.config.get("HUB_QUEUE_MODE") == "inline":
        _inline_jobs().append((func, args))
        return None
    q = get_queue(queue or spec.queue)
    if job_id is not None and not fresh:
        existing = q.fetch_job(job_id)
        status = existing.get_status(refresh=False) if existing is not None else None
        if status in ("queued", "started", "scheduled", "deferred"):
            return existing
        if status == "failed":
            # Enqueued again on purpose (a sweeper, a Retry button): the new run starts with its
            # full retries, and the failure it replaces leaves the failed list.
            existing.failed_job_registry.remove(existing)
    if delay > 0:
        when = time.time() + delay
        rq_job = q.enqueue_at(datetime.fromtimestamp(when, UTC), spec.name, *args, job_id=job_id,
                              **_options(spec, options))
        # RQ keeps whole seconds; the worker's scheduler promotes by this exact score.
        q.connection.zadd(q.scheduled_job_registry.key, {rq_job.id: when}, xx=True)
        return rq_job
    return q.enqueue(spec.name, *args, job_id=job_id, **_options(spec, options))


def enqueue_new(func: Callable, *args, job_id: str, queue: str | None = None, **options):
    """Enqueue a job whose ``job_id`` was never used, in one Redis round trip.

    The same job as ``enqueue(..., fresh=True)``, but RQ's ``Queue.enqueue`` sends two
    transactions (register the queue, then save and push the job); here both go in one
    MULTI/EXEC. Webhook intake calls it once per delivery.
    """
    spec = spec_of(func)
    check_arguments(spec.name, args)
    if current_app.config.get("HUB_QUEUE_MODE") == "inline":
        _inline_jobs().append((func, args))
        return None
    q = get_queue(queue or spec.queue)
    rq_job = q.create_job(spec.name, args=args, job_id=job_id, **_options(spec, options))
    with q.connection.pipeline() as pipe:
        q.enqueue_job(rq_job, pipeline=pipe)
        pipe.execute()
    return rq_job


def enqueue_many(func: Callable, runs: list[tuple[tuple, str]], queue: str | None = None, **options) -> None:
    """Enqueue ``func`` once per ``(args, job_id)`` of ``runs``, job ids never used, in one Redis
    round trip for all of them (the scheduler's runs of a second: ``hub.worker``)."""
    if not runs:
        return
    spec = spec_of(func)
    for args, _ in runs:
        check_arguments(spec.name, args)
    if current_app.config.get("HUB_QUEUE_MODE") == "inline":
        _inline_jobs().extend((func, args) for args, _ in runs)
        return
    q = get_queue(queue or spec.queue)
    made = [q.create_job(spec.name, args=args, job_id=job_id, **_options(spec, options)) for args, job_id in runs]
    with q.connection.pipeline() as pipe:
        for rq_job in made:
            q.enqueue_job(rq_job, pipeline=pipe)
        pipe.execute()


def after_commit(func: Callable, *args, **options) -> None:
    """Enqueue once the current database transaction commits, so the job sees what it wrote.

    Dropped if the transaction rolls back. A failed enqueue (Redis down) is logged; what the
    job was for must then be found by a sweeper (durable work: ``hub.outbox``).
    """
    check_arguments(spec_of(func).name, args)
    db.session().info.setdefault("hub.after_commit", []).append((func, args, options))


@sa_event.listens_for(Session, "after_commit")
def _enqueue_pending(session) -> None:
    if session.in_nested_transaction():
        # SQLAlchemy sends after_commit for a savepoint's release too (``schedule_once`` makes
        # one): nothing is committed yet, and a job enqueued now could run before its row exists.
        return
    for func, args, options in session.info.pop("hub.after_commit", []):
        follow_on = options.pop("follow_on", None)
        if follow_on is not None and has_app_context() and get_current_job() is not None \
                and current_app.config.get("HUB_QUEUE_MODE") != "inline":
            # Committed by a job in a worker: run it after that job, here (``run_follow_ons``).
            g.setdefault("hub_follow_ons", []).append((follow_on, func, args, options))
            continue
        try:
            enqueue(func, *args, **options)
        except RedisError:
            # The data is committed; the job's sweeper picks it up.
            log.warning("hub.jobs.enqueue_after_commit_failed job=%s", spec_of(func).name)


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session, previous_transaction) -> None:
    if not previous_transaction.nested:
        session.info.pop("hub.after_commit", None)


def run_follow_ons() -> None:
    """Run the follow-on work a job committed (``hub.outbox`` kinds declared ``follow_on``),
    each in its own transaction; what it does not settle goes to its own job."""
    while has_app_context() and g.get("hub_follow_ons"):
        for follow_on, func, args, options in g.pop("hub_follow_ons"):
            if follow_on(*args):
                continue
            try:
                enqueue(func, *args, **options)
            except RedisError:
                log.warning("hub.jobs.enqueue_after_commit_failed job=%s", spec_of(func).name)


# --- the inline queue (the demo without Redis, and tests of whole flows) ----------------------

def _inline_jobs() -> list:
    return g.setdefault("hub_inline_jobs", [])


def run_inline_jobs() -> None:
    """Run the jobs enqueued in ``HUB_QUEUE_MODE=inline``, each in its own transaction.

    Called at points where no transaction of a caller is open: after a request, after a job.
    A job that raises propagates (there is no retry inline): tests see the failure at once.
    """
    if not has_app_context() or g.get("hub_inline_running"):
        return
    pending = g.get("hub_inline_jobs")
    if not pending:
        return
    g.hub_inline_running = True
    try:
        while pending:
            func, args = pending.pop(0)
            func(*args)
    finally:
        g.hub_inline_running = False


# --- Redis facts about jobs -------------------------------------------------------------------

def job_statuses(job_ids: list[str]) -> dict[str, str | None]:
    """The RQ status of each job id (``None`` when its job no longer exists), one round trip.

    RQ keeps a job's key until long after it ends (result and failure TTLs), so ``None`` for
    work still open means the job was lost: Redis restarted without persistence, was flushed,
    or failed over to a replica that lagged.
    """
    if not job_ids:
        return {}
    with get_redis().pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")
        found = pipe.execute()
    return {job_id: (status.decode() if status else None) for job_id, status in zip(job_ids, found)}


def missing_jobs(job_ids: list[str]) -> set[str]:
    """The ids among ``job_ids`` whose RQ job no longer exists."""
    return {job_id for job_id, status in job_statuses(job_ids).items() if status is None}


def _load_config(app) -> None:
    for key, default in CONFIG.items():
        value = app.config.get(key, os.environ.get(key, default))
        if isinstance(default, (int, float)) and isinstance(value, str):
            value = type(default)(value)
        app.config[key] = value
    modules = app.config["HUB_PERIODIC_JOB_MODULES"]
    if isinstance(modules, str):
        app.config["HUB_PERIODIC_JOB_MODULES"] = [m.strip() for m in modules.split(",") if m.strip()]
    retries = app.config["HUB_RETRY_INTERVALS"]
    if isinstance(retries, str):
        app.config["HUB_RETRY_INTERVALS"] = [int(i) for i in retries.split(",") if i.strip()]
    intervals = app.config["HUB_PERIODIC_INTERVALS"]
    if isinstance(intervals, str):
        pairs = (p.split("=", 1) for p in intervals.split(",") if "=" in p)
        app.config["HUB_PERIODIC_INTERVALS"] = {k.strip(): float(v) for k, v in pairs}


def init_app(app) -> None:
    _load_config(app)

    @app.after_request
    def _run_inline(response):
        # Inline jobs run once the view has committed: as a worker would, after the request.
        run_inline_jobs()
        return response
