"""The job queue: named RQ queues, enqueue, retries, the inbox processor, the periodic scheduler and `hub worker`."""
from __future__ import annotations

import importlib
import logging
import os
import random
import re
import threading
import time

import click
from flask import current_app
from flask.cli import with_appcontext
from redis.exceptions import RedisError
from rq import Queue, Retry, Worker, get_current_job
from rq.job import Job
from rq.exceptions import StopRequested
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import event as sa_event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, configure_mappers

from .extensions import db, get_redis
from .plugin import ConnectionUnusable, PeriodicJob
from .registry import all_plugins, import_string
from .signals import connection_restored

log = logging.getLogger("hub.jobs")

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
    # How often each worker's scheduler thread wakes up (seconds).
    "HUB_SCHEDULER_TICK": 1.0,
    # Inbox rows still `received` after this many seconds are enqueued by the sweeper.
    "HUB_SWEEP_AFTER_SECONDS": 10,
    # Modules whose `HUB_PERIODIC_JOBS` list the scheduler runs (missing modules are ignored).
    "HUB_PERIODIC_JOB_MODULES": "hub.webhooks,hub.connections,hub.assessments.services,hub.mail",
    # Interval overrides, "dotted.func=seconds,…" (demos and tests run the sweeper faster).
    "HUB_PERIODIC_INTERVALS": "",
    # Seconds between the retries of a failing job (before jitter).
    "HUB_RETRY_INTERVALS": ",".join(str(i) for i in RETRY_INTERVALS),
}

#: Inbox statuses after which a delivery is not processed again (unless replayed).
FINAL = ("done", "skipped")


class Skipped(Exception):
    """Raised by a delivery handler that chooses to do nothing (e.g. an unsupported event).

    The delivery is recorded ``skipped`` with the message as its result, and not retried.
    """


def retry_policy(intervals=None, jitter: float = 0.2) -> Retry:
    if intervals is None:
        intervals = current_app.config.get("HUB_RETRY_INTERVALS") or RETRY_INTERVALS
    # Jitter spreads retries of a burst of failures so they do not hit Lever at the same second.
    spread = [max(1, int(i * random.uniform(1 - jitter, 1 + jitter))) for i in intervals]
    return Retry(max=len(spread), interval=spread)


def get_queue(name: str = "default", app=None) -> Queue:
    app = app or current_app
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}; queues are {', '.join(QUEUES)}")
    return Queue(name, connection=get_redis(app), serializer=JSONSerializer,
                 default_timeout=app.config.get("HUB_JOB_TIMEOUT", 300))


def enqueue(func: str, *args, queue: str = "default", job_id: str | None = None,
            retry: Retry | None | bool = True, fresh: bool = False, **options):
    """Enqueue the job function at dotted path ``func`` with JSON-serialisable ids as arguments.

    In ``HUB_QUEUE_MODE=inline`` (the demo's last resort without Redis) the job runs at once in
    this process instead. With ``job_id`` a second enqueue of the same id while the first is
    still known to RQ is ignored, so callers can enqueue freely; ``fresh=True`` skips that
    check (one Redis round trip) when the caller knows the id is new.
    """
    if current_app.config.get("HUB_QUEUE_MODE") == "inline":
        import_string(func)(*args)
        return None
    if retry is True:
        retry = retry_policy()
    q = get_queue(queue)
    if job_id is not None and not fresh:  # ``fresh``: the caller knows the id was never used
        existing = q.fetch_job(job_id)
        status = existing.get_status(refresh=True) if existing is not None else None
        if status in ("queued", "started", "scheduled", "deferred"):
            return existing
        if status == "failed":
            # Enqueued again on purpose (a sweeper, a retry button): the new run starts with its
            # full retries, and the failure it replaces leaves the failed list.
            existing.failed_job_registry.remove(existing)
    return q.enqueue(func, *args, job_id=job_id, retry=retry or None,
                     failure_ttl=options.pop("failure_ttl", 7 * 24 * 3600), **options)


def missing_jobs(job_ids: list[str]) -> set[str]:
    """The ids among ``job_ids`` whose RQ job no longer exists (one pipelined EXISTS per id).

    RQ keeps a job's key until long after it ends (result and failure TTLs), so a row that
    still says queued while its job's key is gone lost that job: Redis restarted without
    persistence, was flushed, or failed over to a replica that lagged.
    """
    if not job_ids:
        return set()
    with get_redis().pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(Job.key_for(job_id))
        found = pipe.execute()
    return {job_id for job_id, exists in zip(job_ids, found) if not exists}


def enqueue_new(func: str, *args, queue: str, job_id: str, retry: Retry | None | bool = True, **options):
    """Enqueue a job whose ``job_id`` was never used, in one Redis round trip.

    The same job as ``enqueue(..., fresh=True)`` (same retry policy, timeout and TTLs), but RQ's
    ``Queue.enqueue`` sends two transactions (register the queue, then save and push the job);
    here both go in one MULTI/EXEC. Webhook intake calls it once per delivery.
    """
    if current_app.config.get("HUB_QUEUE_MODE") == "inline":
        return enqueue(func, *args, queue=queue, job_id=job_id, retry=retry, fresh=True, **options)
    if retry is True:
        retry = retry_policy()
    # One Queue per app and name: building one checks its serializer against a typing Protocol,
    # about a third of this function's CPU when it was built per call (docs/performance.md, B1).
    queues = current_app.extensions.setdefault("hub.queues", {})
    q = queues.get(queue) or queues.setdefault(queue, get_queue(queue))
    job = q.create_job(func, args=args, job_id=job_id, retry=retry or None,
                       failure_ttl=options.pop("failure_ttl", 7 * 24 * 3600), **options)
    with q.connection.pipeline() as pipe:
        q.enqueue_job(job, pipeline=pipe)
        pipe.execute()
    return job


def enqueue_after_commit(func: str, *args, **options) -> None:
    """Enqueue once the current database transaction commits, so the job sees what it wrote.

    Dropped if the transaction rolls back. Used where a job must never run ahead of its data.
    In the inline queue mode the job runs at once, inside the caller's transaction.
    """
    if current_app.config.get("HUB_QUEUE_MODE") == "inline":
        enqueue(func, *args, **options)
        return
    db.session().info.setdefault("hub.after_commit", []).append((func, args, options))


@sa_event.listens_for(Session, "after_commit")
def _enqueue_pending(session) -> None:
    for func, args, options in session.info.pop("hub.after_commit", []):
        try:
            enqueue(func, *args, **options)
        except RedisError:
            # The data is committed; the job's own sweeper or the next run picks it up.
            log.error("hub.jobs.enqueue_after_commit_failed func=%s", func)


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session, previous_transaction) -> None:
    if not previous_transaction.nested:
        session.info.pop("hub.after_commit", None)


def safe_job_id(*parts) -> str:
    """A deterministic RQ job id from parts (RQ allows letters, digits, ``_`` and ``-`` only)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(str(p) for p in parts))


# --- the inbox processor ---------------------------------------------------------------------

def process_delivery(delivery_id: int) -> str:
    """Run the plugin handler of one stored webhook delivery, once, and record the outcome.

    Status: ``done``/``skipped`` on success, ``paused`` while the connection is unusable (resumed
    by ``connection_restored`` or the sweeper), ``failed`` after the last retry. Other errors are
    re-raised so RQ retries with growing intervals; the handler's side effects carry their own
    unique keys, so a second run does nothing twice.
    """
    from .models import WebhookDelivery

    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return "missing"
    if delivery.status in FINAL:
        return f"already {delivery.status}"
    connection = delivery.connection
    if connection is None or not connection.usable:
        _record(delivery_id, "paused", error="connection is not usable")
        return "paused"
    plugin = all_plugins().get(delivery.plugin_key)
    source = next((s for s in plugin.webhook_sources if s.name == delivery.source), None) if plugin else None
    if source is None:
        _record(delivery_id, "failed", error=f"no webhook source {delivery.plugin_key}/{delivery.source} is installed")
        return "failed"
    delivery.attempts += 1
    # Counted before the handler runs, so a worker killed mid-job still shows the attempt.
    db.session.commit()
    try:
        result = import_string(source.handler)(delivery_id)
    except Skipped as exc:
        db.session.rollback()
        _record(delivery_id, "skipped", result=str(exc) or "skipped")
        return "skipped"
    except ConnectionUnusable as exc:
        db.session.rollback()
        _record(delivery_id, "paused", error=exc.reason or "connection is not usable")
        return "paused"
    except Exception as exc:
        db.session.rollback()
        job = get_current_job()
        last = job is None or not job.retries_left
        _record(delivery_id, "failed" if last else "queued", error=_describe(exc))
        raise
    _record(delivery_id, "done", result=str(result if result is not None else "done")[:1000])
    return "done"


def _describe(exc: Exception) -> str:
    from .security import redact

    return redact(f"{type(exc).__name__}: {exc}")[:1000]


def _record(delivery_id: int, status: str, *, result: str | None = None, error: str | None = None) -> None:
    from .models import WebhookDelivery, utcnow

    delivery = db.session.get(WebhookDelivery, delivery_id)
    delivery.status = status
    if status in ("done", "skipped", "failed"):
        delivery.processed_at = utcnow()
    if result is not None:
        delivery.result = result
    delivery.error = error
    db.session.commit()


def resume_deliveries(connection_id: str) -> str:
    """Enqueue again the paused deliveries of a connection that works again."""
    from .models import Connection, WebhookDelivery
    from .webhooks import requeue_deliveries

    connection = db.session.get(Connection, connection_id)
    if connection is None or not connection.usable:
        return "connection still unusable"
    count = requeue_deliveries(db.select(WebhookDelivery.id).filter_by(
        connection_id=connection_id, status="paused"))
    return f"resumed {count}"


@connection_restored.connect
def _on_connection_restored(sender, connection=None, **extra):
    # A job, not work in the caller's request: the caller's transaction stays the caller's.
    # The sender commits the restored connection before sending; the sweeper is the fallback.
    if connection is None:
        return
    try:
        enqueue("hub.jobs.resume_deliveries", connection.id, queue="webhooks",
                job_id=safe_job_id("resume", connection.id))
    except RedisError:
        log.warning("hub.jobs.resume_not_enqueued connection=%s (the sweeper will resume it)", connection.id)


# --- workers ---------------------------------------------------------------------------------

#: Held by the scheduler thread during each tick and by a worker while it forks a work horse.
SCHEDULER_TICK_LOCK = threading.Lock()


class HubWorker(Worker):
    """An RQ worker whose running jobs count as abandoned soon after it dies.

    RQ keeps a running job in the StartedJobRegistry until ``last heartbeat + TTL``; its TTL is
    the monitoring interval plus a fixed 60 s, so after ``kill -9`` a job waited over a minute
    before anyone noticed. Here the margin is ``HUB_JOB_HEARTBEAT_GRACE``.
    """

    heartbeat_grace = 10
    #: Set by SIGTERM/SIGINT: the work loop ended because someone asked, not because Redis went away.
    stop_asked = False

    def request_stop(self, signum, frame):
        self.stop_asked = True
        super().request_stop(signum, frame)

    def fork_work_horse(self, job, queue):
        # Python docs (os.fork): forking a process with other threads leaves the child with any
        # lock those threads held at that instant, so the child can hang on its first log line,
        # Redis or database call. The scheduler thread does all three; it parks between ticks,
        # and forking only while it is parked keeps the work horse free of held locks.
        with SCHEDULER_TICK_LOCK:
            super().fork_work_horse(job, queue)

    def main_work_horse(self, job, queue):
        # SQLAlchemy docs (pooling: "Using Connection Pools with Multiprocessing or os.fork()"):
        # the forked work horse must not reuse the connections it inherited from the worker,
        # whose scheduler thread keeps using them; two processes on one socket hang.
        db.engine.dispose(close=False)
        super().main_work_horse(job, queue)

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            interval = min(job.timeout - working_time, interval)
        return int(interval) + self.heartbeat_grace


def promote_scheduled_jobs(app) -> int:
    """Move due jobs (retries with an interval) from each ScheduledJobRegistry to their queue.

    Replaces RQ's scheduler process, whose lock outlives a killed worker by a minute. Several
    workers may run this at once: removing the entry from the registry is the claim.
    """
    moved = 0
    redis = get_redis(app)
    for name in QUEUES:
        queue = get_queue(name, app)
        registry = queue.scheduled_job_registry
        for job_id in registry.get_jobs_to_schedule():
            if not redis.zrem(registry.key, job_id):
                continue  # another worker claimed it
            job = queue.fetch_job(job_id)
            if job is not None:
                queue.enqueue_job(job)
                moved += 1
    return moved


def recover_abandoned_jobs(app, tick: float) -> None:
    """Retry (or fail) jobs whose worker stopped sending heartbeats; one worker per tick does it."""
    redis = get_redis(app)
    for name in QUEUES:
        if redis.set(f"hub:jobs:recover:{name}", os.getpid(), nx=True, px=max(int(tick * 1000), 500)):
            queue = get_queue(name, app)
            StartedJobRegistry(queue=queue).cleanup()


def periodic_jobs(app) -> list[tuple[PeriodicJob, str | None]]:
    """Every periodic job: each plugin's (with its key), then those of HUB_PERIODIC_JOB_MODULES."""
    jobs = [(job, plugin.key) for plugin in all_plugins(app).values() for job in plugin.periodic_jobs]
    for module_name in app.config["HUB_PERIODIC_JOB_MODULES"]:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # the module does not exist (yet): nothing to schedule from it
            raise
        jobs += [(job, None) for job in getattr(module, "HUB_PERIODIC_JOBS", ())]
    return jobs


def interval_seconds(app, job: PeriodicJob) -> float:
    return float(app.config["HUB_PERIODIC_INTERVALS"].get(job.func, job.interval.total_seconds()))


def enqueue_periodic_jobs(app, now: float | None = None) -> list[str]:
    """Enqueue each periodic job whose time slot has no run yet; returns the job ids enqueued.

    The slot is ``now // interval``; ``SET NX`` on a key per job and slot lets exactly one worker
    in the fleet enqueue it, and the deterministic job id keeps a slot to one job.
    """
    from .models import Connection

    now = time.time() if now is None else now
    redis = get_redis(app)
    enqueued = []
    for job, plugin_key in periodic_jobs(app):
        interval = interval_seconds(app, job)
        slot = int(now // interval)
        targets: list[str | None] = [None]
        if job.per_connection:
            query = db.select(Connection)
            if plugin_key:
                query = query.filter_by(plugin_key=plugin_key)
            targets = [c.id for c in db.session.scalars(query) if c.usable]
        for connection_id in targets:
            job_id = safe_job_id("periodic", job.func, connection_id or "hub", slot)
            if not redis.set(f"hub:periodic:{job_id}", os.getpid(), nx=True, px=int(interval * 2000)):
                continue
            # Behind a backlog the last slot's run may still be waiting in its queue: it will do
            # this slot's work too, so one waiting run is enough (not one per slot).
            previous = get_queue(job.queue).fetch_job(
                safe_job_id("periodic", job.func, connection_id or "hub", slot - 1))
            if previous is not None and previous.get_status(refresh=False) in ("queued", "scheduled"):
                continue
            args = (connection_id,) if connection_id else ()
            enqueue(job.func, *args, queue=job.queue, job_id=job_id, retry=False)
            enqueued.append(job_id)
    db.session.rollback()
    return enqueued


class Scheduler(threading.Thread):
    """The thread inside each `hub worker`: periodic jobs, due retries, abandoned jobs."""

    def __init__(self, app):
        super().__init__(name="hub-scheduler", daemon=True)
        self.app = app
        self.tick = float(app.config["HUB_SCHEDULER_TICK"])
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with SCHEDULER_TICK_LOCK, self.app.app_context():
                    try:
                        self.run_once()
                    finally:
                        db.session.remove()
            except (RedisError, OperationalError) as exc:
                # Redis or the database is down: try again next tick, without a traceback a second.
                log.warning("hub.scheduler.unavailable %s", type(exc).__name__)
            except Exception:
                log.exception("hub.scheduler.tick_failed")
            self.stopping.wait(self.tick)

    def run_once(self) -> None:
        recover_abandoned_jobs(self.app, self.tick)
        promote_scheduled_jobs(self.app)
        enqueue_periodic_jobs(self.app)

    def stop(self) -> None:
        self.stopping.set()


@click.command("worker")
@click.option("--queues", default=",".join(QUEUES), show_default=True,
              help="Comma-separated queues, most urgent first.")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty (tests, one-off runs).")
@click.option("--name", default=None, help="Worker name (default: host and pid).")
@click.option("--no-scheduler", is_flag=True, help="Do not run periodic jobs from this worker.")
@with_appcontext
def worker_command(queues, burst, name, no_scheduler):
    """Run an RQ worker (with the scheduler thread) for the hub's jobs. Run as many as you like."""
    app = current_app._get_current_object()
    names = [q.strip() for q in queues.split(",") if q.strip()]

    def new_worker() -> HubWorker:
        worker = HubWorker([get_queue(n, app) for n in names], connection=get_redis(app),
                           serializer=JSONSerializer, name=name,
                           job_monitoring_interval=int(app.config["HUB_JOB_MONITORING_INTERVAL"]))
        worker.heartbeat_grace = int(app.config["HUB_JOB_HEARTBEAT_GRACE"])
        return worker

    # A process's first query configures the mappers under a global lock; a work horse forked
    # at that moment inherits the lock held and hangs until the job times out (seen at worker
    # start with a backlog). Configure them before any thread or fork; SCHEDULER_TICK_LOCK
    # keeps forks away from the scheduler thread's other locks (Redis pool, database pool).
    configure_mappers()
    scheduler = None
    if burst:
        promote_scheduled_jobs(app)
    elif not no_scheduler:
        scheduler = Scheduler(app)
        scheduler.start()
    worker = None
    try:
        while True:
            try:
                worker = new_worker()
                # RQ's own scheduler process is replaced by the thread above (see promote_scheduled_jobs).
                worker.work(burst=burst, with_scheduler=False, logging_level="INFO")
            except RedisError as exc:  # Redis down at start, or in RQ's teardown after its loop
                log.warning("hub.worker.redis_unavailable %s", type(exc).__name__)
            if burst or (worker is not None and worker.stop_asked):
                break
            # RQ leaves its work loop on any unexpected error, e.g. Redis going away while a job
            # runs: without this the worker would exit and the queue stop until someone restarts it.
            log.warning("hub.worker.restarting in 2s")
            try:
                time.sleep(2)
            except StopRequested:  # RQ's signal handler, when asked to stop while we wait
                break
            if worker is not None:
                if worker.stop_asked:
                    break
                _forget_worker(worker)
    finally:
        if scheduler:
            scheduler.stop()


def _forget_worker(worker: HubWorker) -> None:
    """Drop the registration a worker could not remove (Redis was away), so its name is free again."""
    try:
        worker.connection.delete(worker.key)
    except RedisError:
        pass


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
    app.cli.add_command(worker_command)
