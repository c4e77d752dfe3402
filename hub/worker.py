"""`hub worker`: RQ workers for the hub's queues, each with a scheduler thread.

The scheduler thread of every worker promotes due retries, recovers jobs of workers that died,
and enqueues periodic jobs once per time slot across the whole fleet (a Redis key per slot).
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
import time

import click
from flask import current_app
from flask.cli import with_appcontext
from redis.exceptions import RedisError
from rq import Worker
from rq.exceptions import StopRequested
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import configure_mappers

from .extensions import db, get_redis
from .jobs import QUEUES, enqueue, get_queue, safe_job_id
from .plugin import PeriodicJob
from .registry import all_plugins

log = logging.getLogger("hub.worker")

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
    return float(app.config["HUB_PERIODIC_INTERVALS"].get(job.name, job.interval.total_seconds()))


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
            job_id = safe_job_id("periodic", job.name, connection_id or "hub", slot)
            if not redis.set(f"hub:periodic:{job_id}", os.getpid(), nx=True, px=int(interval * 2000)):
                continue
            # Behind a backlog the last slot's run may still be waiting in its queue: it will do
            # this slot's work too, so one waiting run is enough (not one per slot).
            previous = get_queue(job.queue_name).fetch_job(
                safe_job_id("periodic", job.name, connection_id or "hub", slot - 1))
            if previous is not None and previous.get_status(refresh=False) in ("queued", "scheduled"):
                continue
            args = (connection_id,) if connection_id else ()
            enqueue(job.func, *args, queue=job.queue_name, job_id=job_id, retry=False)
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


def init_app(app) -> None:
    app.cli.add_command(worker_command)
