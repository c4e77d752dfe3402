"""`hub worker`: a supervisor, its long-lived work process, and the scheduler thread.

Each ``hub worker`` is two processes. The supervisor runs the scheduler thread (it promotes due
retries, recovers jobs of workers that died and enqueues periodic jobs once per time slot across
the whole fleet) and keeps one work process alive. The work process runs job after job in
itself (no fork per job: a fork, a cold database connection and RQ's bookkeeping per job cost
~70 ms, more than the work; docs/performance.md B5), each in its own app context and
transaction.

Crash isolation stays with the supervisor: when the work process dies (``kill -9``, a crash),
the job it held is handed back to RQ at once and a new work process starts; a job that outlives
its timeout is stopped (and the process killed if it does not stop); a process whose memory
grew past ``HUB_WORKER_MAX_RSS_MB`` finishes its job and is replaced. If the supervisor itself
dies, its work process is told to stop after its job (Linux's parent-death signal), and the
heartbeat's short TTL lets any other worker's scheduler recover the job.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time

import click
import redis as redis_lib
import sqlalchemy as sa
from flask import current_app, g
from flask.cli import with_appcontext
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker_registration import clean_worker_registry
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import configure_mappers

from .extensions import db, get_redis
from .jobs import QUEUES, JobFailed, enqueue, enqueue_many, get_queue, job_statuses, safe_job_id
from .metrics import (
    JOB_DURATION,
    JOB_RUNS,
    SCHEDULER_TICK,
    job_label,
    plugin_of_job,
    running_plugin,
    serve_metrics,
)
from .plugin import PeriodicJob
from .registry import all_plugins

log = logging.getLogger("hub.worker")

#: Held by the scheduler thread during each tick and by the supervisor while it forks a work process.
SCHEDULER_TICK_LOCK = threading.Lock()


def peak_rss_bytes() -> int:
    """The most resident memory this process has held (``getrusage``: one system call, asked
    after every job; reading ``/proc/self/statm`` instead cost ~1 % of a busy worker's CPU)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB


class HubWorker(SimpleWorker):
    """An RQ worker that runs job after job in its own process (no fork per job).

    Each job gets a fresh app context (its own ``g`` and database session, returned to the pool
    after it), a heartbeat thread that keeps its claim alive every ``job_monitoring_interval``
    (so the claim lapses ``heartbeat_grace`` seconds after the process dies, not a job timeout
    later), and a deadline the supervisor watches.
    """

    heartbeat_grace = 10
    #: Set by SIGTERM/SIGINT: the work loop ended because someone asked, not because Redis went away.
    stop_asked = False
    #: The app whose context each job runs in (set by ``hub worker``; tests may leave it None).
    app = None
    #: Shared with the supervisor: the monotonic time by which the running job must have ended.
    deadline = None
    max_rss = 0
    max_jobs = 0
    jobs_done = 0

    def handle_exception(self, job, *exc_info) -> None:
        """A job failed through the hub's job wrapper (``JobFailed``), which logged it already
        (the whole exception, redacted; one line for durable work): one line here, not RQ's
        ERROR and the wrapper's traceback once more. Anything else: RQ's own handling."""
        if len(exc_info) > 1 and isinstance(exc_info[1], JobFailed):
            log.warning("hub.worker.job_failed job=%s retries_left=%s", job.id, job.retries_left)
            call_exception_handlers(self._exc_handlers, job, *exc_info)
            return
        super().handle_exception(job, *exc_info)

    def heartbeat(self, timeout: int | None = None, pipeline=None):
        """RQ's worker heartbeat in one round trip: it sends three commands one by one (a
        hash field and two expiries) before every job, ~8 % of a skipped delivery's CPU."""
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipe)
            pipe.execute()

    def request_stop(self, signum, frame):
        self.stop_asked = True
        super().request_stop(signum, frame)

    def execute_job(self, job, queue):
        if self.deadline is not None and job.timeout and job.timeout > 0:
            # The job's own timeout stops it first (SIGALRM); the supervisor kills the process
            # only if that did not work (a job stuck outside Python).
            self.deadline.value = time.monotonic() + job.timeout + self.heartbeat_grace
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, stop), name="hub-heartbeat", daemon=True)
        started, name = time.perf_counter(), job_label(job.func_name)
        running_plugin(plugin_of_job(name))
        try:
            if self.app is not None:
                with self.app.app_context():
                    beat.start()
                    try:
                        super().execute_job(job, queue)
                    finally:
                        db.session.remove()
                        self._schedule_exactly(job, queue, g.pop("hub_defer_until", None))
            else:
                beat.start()
                super().execute_job(job, queue)
        finally:
            stop.set()
            if beat.is_alive():
                beat.join(5)
            if self.deadline is not None:
                self.deadline.value = 0.0
            running_plugin(None)
            JOB_DURATION.labels(name).observe(time.perf_counter() - started)
            status = job.get_status(refresh=False)
            JOB_RUNS.labels(name, getattr(status, "value", status) or "unknown").inc()
        self.jobs_done += 1
        self._recycle_if_needed()

    def _schedule_exactly(self, job, queue, until: float | None) -> None:
        """A job given back (``Defer``) was scheduled by RQ to the whole second: move it to its
        exact time, so jobs given back together come back spread out as their turns are."""
        if until is None:
            return
        try:
            self.connection.zadd(queue.scheduled_job_registry.key, {job.id: until}, xx=True)
        except RedisError:
            pass  # it runs at RQ's whole second instead

    def unsubscribe(self):
        # redis-py 8 made PubSubWorkerThread.stop() wait for its thread, which RQ starts with a
        # 60 s poll: every stop of a worker took up to a minute. Wait a second at most, as RQ
        # meant to (its own join below has that timeout).
        if self.pubsub_thread:
            self.pubsub.unsubscribe()
            try:
                self.pubsub_thread.stop(timeout=1)
            except TypeError:  # redis-py before 8: stop() does not wait
                self.pubsub_thread.stop()
            self.pubsub_thread.join(timeout=1)
            self.pubsub.close()

    def _beat(self, job, stop: threading.Event) -> None:
        while not stop.wait(self.job_monitoring_interval):
            execution = getattr(self, "execution", None)
            if execution is None:
                continue
            try:
                self.maintain_heartbeats(job, execution)
            except RedisError:
                pass  # the claim lapses if Redis stays away; the job's outcome is in the database

    def _recycle_if_needed(self) -> None:
        # The peak, not the current size: memory a job once took stays the process's on Linux
        # (the allocator rarely returns it), so a peak past the limit is a process to replace.
        rss = peak_rss_bytes()
        if self.max_rss and rss > self.max_rss:
            log.warning("hub.worker.recycle reason=memory rss_mb=%d", rss // 2**20)
            self._stop_requested = True
        elif self.max_jobs and self.jobs_done >= self.max_jobs:
            log.info("hub.worker.recycle reason=jobs jobs=%d", self.jobs_done)
            self._stop_requested = True

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        # RQ's SimpleWorker keeps a claim for the job's whole timeout plus 60 s, because nothing
        # beats while it runs; here the heartbeat thread does, so the claim can be short.
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            interval = min(job.timeout - working_time, interval)
        return int(max(interval, 1)) + self.heartbeat_grace


def recover_jobs_of(app, worker_name: str) -> int:
    """Hand the jobs a dead work process held back to RQ now (retried, or failed after the last
    retry), instead of when their claim lapses; returns how many it held."""
    redis = get_redis(app)
    key = WORKER_EXECUTIONS_KEY_TEMPLATE.format(worker_name)
    held = redis.smembers(key)
    for name in QUEUES:
        queue = get_queue(name, app)
        if held:
            registry = StartedJobRegistry(queue=queue)
            # Only these claims are made to lapse (score 1), so cleanup handles exactly them.
            for member in held:
                redis.zadd(registry.key, {member: 1}, xx=True)
            registry.cleanup(timestamp=2)
    redis.delete(key, f"{HubWorker.redis_worker_namespace_prefix}{worker_name}")
    for name in QUEUES:
        clean_worker_registry(get_queue(name, app))
    return len(held)


def promote_scheduled_jobs(app) -> int:
    """Move due jobs (retries with an interval) from each ScheduledJobRegistry to their queue.

    Replaces RQ's scheduler process, whose lock outlives a killed worker by a minute. Several
    workers may run this at once: removing the entry from the registry is the claim.
    """
    moved = 0
    redis = get_redis(app)
    queues = [get_queue(name, app) for name in QUEUES]
    now = time.time()  # to the fraction of a second: given-back jobs are due at exact times
    # Every queue's registry in one round trip: this runs five times a second in every worker.
    with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zrangebyscore(queue.scheduled_job_registry.key, 0, now)
        due = pipe.execute()
    for queue, job_ids in zip(queues, due):
        if not job_ids:
            continue
        # Three round trips for all of a queue's due jobs, not three or four for each (in a bulk
        # move dozens come due each second: docs/performance.md, B5).
        key = queue.scheduled_job_registry.key
        ids = [job_id.decode() if isinstance(job_id, bytes) else job_id for job_id in job_ids]
        with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.zrem(key, job_id)
            # Another worker that removed an entry first claimed that job.
            claimed = [job_id for job_id, removed in zip(ids, pipe.execute()) if removed]
        jobs = [job for job in Job.fetch_many(claimed, connection=redis, serializer=queue.serializer)
                if job is not None]
        if not jobs:
            continue
        with redis.pipeline() as pipe:
            for job in jobs:
                # Ahead of new work: a job coming back at its time holds a reserved slot
                # (a rate-limit turn) that passes if it waits behind a backlog.
                queue.enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()
        moved += len(jobs)
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


class UsableConnections:
    """The usable connections' ids of each plugin, read again at most every ``every`` seconds.

    The scheduler thread asks every tick (once a second); a query each time was about a third of
    an idle worker's CPU with 100 connections (docs/performance.md, B7). A connection made
    meanwhile gets its periodic runs within ``every`` seconds instead of at the next tick: a
    read that finds connections the last one did not have keeps them as new (``take_new``).
    """

    def __init__(self, every: float):
        self.every = every
        self.read: dict[str | None, tuple[float, list[str]]] = {}
        self.new: dict[str | None, set[str]] = {}
        self.marks: dict[str | None, tuple | None] = {}
        #: Per plugin, what the last read added and removed (``by_phase`` follows them).
        self._changes: dict[str | None, tuple[set[str], set[str]]] = {}
        self._phases: dict[tuple, tuple[float, dict[int, set[str]]]] = {}

    def of(self, plugin_key: str | None, now: float) -> list[str]:
        read_at, ids = self.read.get(plugin_key, (None, []))
        if read_at is None or not 0 <= now - read_at < self.every:
            mark = usable_connections_mark(plugin_key)
            if read_at is not None and mark is not None and mark == self.marks.get(plugin_key):
                # Nothing came or went: 10,000 ids are not read again (a tick of ~60 ms, B8).
                self._changes[plugin_key] = (read_at, set(), set())
                self.read[plugin_key] = (now, ids)
                return ids
            self.marks[plugin_key] = mark
            fresh = usable_connection_ids(plugin_key)
            before, after = set(ids), set(fresh)
            added, removed = after - before, before - after
            if read_at is not None:
                self.new.setdefault(plugin_key, set()).update(added)
            self._changes[plugin_key] = (read_at, added, removed)
            ids = fresh
            self.read[plugin_key] = (now, ids)
        return ids

    def take_new(self, plugin_key: str | None) -> set[str]:
        """Connections that appeared since the previous read (none on this process's first)."""
        return self.new.pop(plugin_key, set())

    def by_phase(self, plugin_key: str | None, job: str, interval: float, width: float,
                 now: float) -> dict[int, set[str]]:
        """The usable connections by the bucket of the interval their runs fall in (their
        offset, ``connection_offset``), computed once per read of the connections."""
        ids = self.of(plugin_key, now)
        read_at = self.read[plugin_key][0]
        key = (plugin_key, job, interval, width)
        cached = self._phases.get(key)
        if cached is None or cached[0] != read_at:
            # Only the connections that came or went are placed again (a read of 10,000 where
            # nothing changed must not hash them all again).
            since, added, removed = self._changes[plugin_key]
            if cached is None or cached[0] != since:  # placed from a read older than the last
                phases, added, removed = {}, set(ids), set()
            else:
                phases = cached[1]
            for connection_id in removed:
                phases.get(int(connection_offset(job, connection_id, interval) // width), set()).discard(connection_id)
            for connection_id in added:
                phases.setdefault(int(connection_offset(job, connection_id, interval) // width), set()).add(
                    connection_id)
            cached = self._phases[key] = (read_at, phases)
        return cached[1]


def connection_offset(job: str, connection_id: str, interval: float) -> float:
    """Seconds into each interval at which this connection's runs of ``job`` fall: stable for
    the connection, spread evenly over the fleet (a hash), so no instant carries every run."""
    digest = hashlib.blake2b(f"{job}\0{connection_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % max(int(interval * 1000), 1) / 1000


def connection_slot(job: str, connection_id: str, interval: float, now: float) -> int:
    """The number of the connection's latest run time at or before ``now``."""
    return int((now - connection_offset(job, connection_id, interval)) // interval)


def usable_connections_mark(plugin_key: str | None) -> tuple | None:
    """A fingerprint of the usable connections (their number and the sum of their ids' hashes)
    computed by PostgreSQL, one row back; None on another database (the ids are read instead)."""
    from .models import Connection

    if db.engine.dialect.name != "postgresql":
        return None
    query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.func.hashtext(Connection.id)), 0)).where(
        Connection.usable)
    if plugin_key:
        query = query.where(Connection.plugin_key == plugin_key)
    return tuple(db.session.execute(query).one())


def usable_connection_ids(plugin_key: str | None) -> list[str]:
    """One Core query: the ids of the connections that may run work (not the rows)."""
    from .models import Connection

    query = sa.select(Connection.id).where(Connection.usable)
    if plugin_key:
        query = query.where(Connection.plugin_key == plugin_key)
    return list(db.session.scalars(query))


#: The runs of per-connection jobs a tick enqueues at most, catching up (a fleet back after an
#: outage, a scheduler that stalled): ~0.2 ms of CPU each (docs/performance.md, B8), so a tick
#: stays near 30 ms. A second's bucket is never split, and a scheduler that is behind settles two
#: buckets a tick at least, so it always gains on the clock.
RUNS_PER_TICK = 150


def enqueue_periodic_jobs(app, now: float | None = None, tried: dict | None = None,
                          connections: UsableConnections | None = None) -> list[str]:
    """Enqueue each periodic job whose time slot has no run yet; returns the job ids enqueued.

    A hub-wide job's slot is ``now // interval``; ``SET NX`` on a key per job and slot lets
    exactly one worker in the fleet enqueue it, and the deterministic job id keeps a slot to one
    job. ``tried`` (the scheduler thread's own) remembers the slot this process already settled,
    so a tick inside it costs no round trip to Redis.

    A per-connection job runs for each connection at its own offset within the interval
    (``connection_offset``). With the scheduler thread's ``tried`` and ``connections`` the
    interval is cut into buckets of a tick's length: each tick claims the buckets that came due
    since the last (``SET NX`` per bucket: one worker of the fleet does each) and enqueues only
    their connections' runs, so the work of a tick is the fleet's runs of one second, not all of
    them at a slot boundary; a connection that appeared since the last read of the connections
    gets its run at once. Called without them (a one-off, tests), every connection's current run
    is enqueued unless it was already.
    """
    now = time.time() if now is None else now
    redis = get_redis(app)
    enqueued = []
    usable: dict[str | None, list[str]] = {}  # plugin key → its usable connections, read once
    budget = [RUNS_PER_TICK]  # shared by the per-connection jobs of this tick
    for job, plugin_key in periodic_jobs(app):
        interval = interval_seconds(app, job)
        if job.per_connection and tried is not None and connections is not None:
            enqueued += _enqueue_spread(app, redis, job, plugin_key, interval, now, tried, connections, budget)
            continue
        if not job.per_connection:
            runs = [(None, int(now // interval))]
        else:
            if plugin_key not in usable:
                usable[plugin_key] = (connections.of(plugin_key, now) if connections is not None
                                      else usable_connection_ids(plugin_key))
            runs = [(cid, connection_slot(job.name, cid, interval, now)) for cid in usable[plugin_key]]
        for connection_id, slot in runs:
            if tried is not None and tried.get((job.name, connection_id)) == slot:
                continue
            job_id = safe_job_id("periodic", job.name, connection_id or "hub", slot)
            claimed = redis.set(f"hub:periodic:{job_id}", os.getpid(), nx=True, px=int(interval * 2000))
            if tried is not None:
                tried[(job.name, connection_id)] = slot
            if claimed and _enqueue_run(job, connection_id, slot):
                enqueued.append(job_id)
    db.session.rollback()
    return enqueued


def _enqueue_run(job: PeriodicJob, connection_id: str | None, slot: int) -> bool:
    """Enqueue one claimed run, unless the previous slot's run still waits in its queue: behind
    a backlog it will do this slot's work too, so one waiting run is enough (not one per slot)."""
    previous = get_queue(job.queue_name).fetch_job(
        safe_job_id("periodic", job.name, connection_id or "hub", slot - 1))
    if previous is not None and previous.get_status(refresh=False) in ("queued", "scheduled"):
        return False
    args = (connection_id,) if connection_id else ()
    enqueue(job.func, *args, queue=job.queue_name, retry=False,
            job_id=safe_job_id("periodic", job.name, connection_id or "hub", slot))
    return True


def _enqueue_spread(app, redis, job: PeriodicJob, plugin_key: str | None, interval: float, now: float,
                    tried: dict, connections: UsableConnections, budget: list[int]) -> list[str]:
    """One tick of a per-connection job: the runs of the buckets due since the last tick, as many
    as ``budget`` allows (what is left waits for the next tick)."""
    buckets = max(1, round(interval / max(float(app.config["HUB_SCHEDULER_TICK"]), 0.1)))
    width = interval / buckets
    phases = connections.by_phase(plugin_key, job.name, interval, width, now)
    runs = [(cid, connection_slot(job.name, cid, interval, now)) for cid in connections.take_new(plugin_key)]
    current = int(now // width)
    last = tried.get((job.name, "bucket"))
    if last is None or current - last > buckets:
        # A fresh process, or a scheduler that missed a whole interval: the last interval's
        # buckets are settled again, oldest first. Those another worker settled are claimed
        # already (their keys outlive two intervals) and cost one SET each; those no worker did
        # (the whole fleet was down) are caught up now, RUNS_PER_TICK a tick.
        last = current - buckets
    # Only buckets with connections in them are claimed; walking the occupied ones when there are
    # fewer of them than seconds to settle (a long interval, few connections).
    if current - last <= len(phases):
        occupied = [b for b in range(last + 1, current + 1) if phases.get(b % buckets)]
    else:
        occupied = sorted(b for b in (current - (current - phase) % buckets for phase, ids in phases.items() if ids)
                          if b > last)
    settled, won = current, 0
    for bucket in occupied:
        if budget[0] <= 0 and won >= 2:
            settled = bucket - 1  # the rest at the next tick
            break
        if redis.set(f"hub:periodic:{job.name}:bucket:{bucket}", os.getpid(), nx=True, px=int(interval * 2000)):
            due = phases[bucket % buckets]
            runs += [(cid, bucket // buckets) for cid in due]
            budget[0] -= len(due)
            won += 1
    tried[(job.name, "bucket")] = settled
    if not runs:
        return []
    # One round trip for the previous runs' statuses and one for all the new jobs: a second's
    # runs of 10,000 connections cost ~2.4 ms of CPU each, one by one (docs/performance.md, B8).
    previous = job_statuses([safe_job_id("periodic", job.name, cid, slot - 1) for cid, slot in runs])
    due = [((cid,), safe_job_id("periodic", job.name, cid, slot)) for cid, slot in runs
           if previous[safe_job_id("periodic", job.name, cid, slot - 1)] not in ("queued", "scheduled")]
    # A run enqueued already (another worker saw the same new connection) is left as it is.
    current_ids = job_statuses([job_id for _, job_id in due])
    due = [(args, job_id) for args, job_id in due if current_ids[job_id] is None]
    enqueue_many(job.func, due, queue=job.queue_name, retry=False)
    return [job_id for _, job_id in due]


class Scheduler(threading.Thread):
    """The thread inside each `hub worker`: periodic jobs, due retries, abandoned jobs."""

    def __init__(self, app):
        super().__init__(name="hub-scheduler", daemon=True)
        self.app = app
        self.tick = float(app.config["HUB_SCHEDULER_TICK"])
        self.stopping = threading.Event()
        #: (periodic job, connection) → the slot this process settled (``enqueue_periodic_jobs``).
        self.tried: dict[tuple, int] = {}
        self.connections = UsableConnections(float(app.config["HUB_SCHEDULER_CONNECTIONS_EVERY"]))

    #: Seconds between promotions of due jobs within a tick: jobs given back to wait for a
    #: rate-limit slot are due at sub-second times.
    promote_every = 0.2

    def run(self) -> None:
        next_tick = 0.0
        while not self.stopping.is_set():
            pause = min(self.tick, self.promote_every)
            try:
                with SCHEDULER_TICK_LOCK, self.app.app_context():
                    try:
                        if time.monotonic() >= next_tick:
                            next_tick = time.monotonic() + self.tick
                            self.run_once()
                        else:
                            promote_scheduled_jobs(self.app)
                    finally:
                        db.session.remove()
            except (RedisError, OperationalError) as exc:
                # Redis or the database is down: try again next tick, without a traceback a second.
                log.warning("hub.scheduler.unavailable %s", type(exc).__name__)
                pause, next_tick = self.tick, 0.0
            except Exception:
                log.exception("hub.scheduler.tick_failed")
                pause, next_tick = self.tick, 0.0
            self.stopping.wait(pause)

    def run_once(self) -> None:
        with SCHEDULER_TICK.time():
            recover_abandoned_jobs(self.app, self.tick)
            promote_scheduled_jobs(self.app)
            enqueue_periodic_jobs(self.app, tried=self.tried, connections=self.connections)

    def stop(self) -> None:
        self.stopping.set()


def worker_redis(app) -> redis_lib.Redis:
    """The work loop's own Redis client; RQ gives it a socket timeout longer than its blocking
    dequeue (``Worker._set_connection``).

    RQ sets that timeout by changing the settings of the pool it is given: given the hub's
    client, every job and the scheduler would lose their 5 s timeout, and connections the pool
    already held kept 5 s, so an idle dequeue ended in "could not connect to Redis instance:
    Timeout reading from socket", an ERROR and a back-off while Redis was fine.
    """
    return redis_lib.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=2,
                                    health_check_interval=30)


def make_worker(app, names: list[str], name: str | None) -> HubWorker:
    worker = HubWorker([get_queue(n, app) for n in names], connection=worker_redis(app),
                       serializer=JSONSerializer, name=name,
                       job_monitoring_interval=int(app.config["HUB_JOB_MONITORING_INTERVAL"]))
    worker.heartbeat_grace = int(app.config["HUB_JOB_HEARTBEAT_GRACE"])
    worker.app = app
    worker.max_rss = int(app.config["HUB_WORKER_MAX_RSS_MB"]) * 2**20
    worker.max_jobs = int(app.config["HUB_WORKER_MAX_JOBS"])
    return worker


def work(app, names: list[str], name: str | None, burst: bool, deadline=None) -> int:
    """Run jobs in this process until asked to stop (or, with ``burst``, until the queues are
    empty); 0 when it stopped on request or to be replaced, 1 otherwise."""
    worker = None
    while True:
        try:
            worker = make_worker(app, names, name)
            worker.deadline = deadline
            # RQ's own scheduler process is replaced by the supervisor's thread (see promote_scheduled_jobs).
            worker.work(burst=burst, with_scheduler=False, logging_level=app.config["HUB_WORKER_LOG_LEVEL"])
        except RedisError as exc:  # Redis down at start, or in RQ's teardown after its loop
            log.warning("hub.worker.redis_unavailable %s", type(exc).__name__)
        if burst or worker is None or worker.stop_asked or worker._stop_requested:
            return 0
        # RQ leaves its work loop on any unexpected error, e.g. Redis going away while a job
        # runs: without this the process would exit and the queue stop until someone restarts it.
        log.warning("hub.worker.restarting in 2s")
        try:
            time.sleep(2)
        except StopRequested:  # RQ's signal handler, when asked to stop while we wait
            return 0
        if worker.stop_asked:
            return 0
        _forget_worker(worker)


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its supervisor dies (a warm stop: the job ends first)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Keeps one work process running: starts it, watches its job's deadline, recovers and
    replaces it when it dies, and passes a stop request on to it."""

    def __init__(self, app, names: list[str], name: str):
        self.app = app
        self.names = names
        self.name = name
        self.deadline = multiprocessing.Value("d", 0.0, lock=False)
        self.child: int | None = None
        self.child_name = ""
        self.generation = 0
        self.stopping = False

    def start_child(self) -> None:
        self.generation += 1
        self.child_name = f"{self.name}.{self.generation}"
        self.deadline.value = 0.0
        # Forking while the scheduler thread holds a lock (Redis or database pool, logging) would
        # leave the child with that lock held forever (Python docs, os.fork).
        with SCHEDULER_TICK_LOCK:
            pid = os.fork()
        if pid == 0:  # the work process
            code = 1
            try:
                _die_with_parent()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                # SQLAlchemy docs (pooling, "Using Connection Pools with Multiprocessing or
                # os.fork()"): the child must not use the connections the supervisor keeps using.
                db.engine.dispose(close=False)
                code = work(self.app, self.names, self.child_name, burst=False, deadline=self.deadline)
            except BaseException:
                log.exception("hub.worker.process_failed")
            finally:
                logging.shutdown()
                os._exit(code)
        self.child = pid
        log.info("hub.worker.started process=%s pid=%d", self.child_name, pid)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        failures = 0
        self.start_child()
        while True:
            pid, status = os.waitpid(self.child, os.WNOHANG)
            if pid == 0:
                if not self.stopping and self.deadline.value and time.monotonic() > self.deadline.value:
                    log.warning("hub.worker.job_overran process=%s: killing it", self.child_name)
                    os.kill(self.child, signal.SIGKILL)
                time.sleep(0.2)
                continue
            code = os.waitstatus_to_exitcode(status)
            clean = code == 0
            if not clean:
                with self.app.app_context():
                    try:
                        held = recover_jobs_of(self.app, self.child_name)
                    except RedisError:
                        held = -1  # the claims lapse on their own and any scheduler recovers them
                log.warning("hub.worker.process_died process=%s exit=%s jobs_handed_back=%s",
                            self.child_name, code, held)
            if self.stopping:
                return 0
            failures = 0 if clean else failures + 1
            # A process that keeps dying at once (bad config, database away) is restarted slower.
            time.sleep(min(30.0, 0.5 * 2 ** max(0, failures - 1)) if failures else 0)
            self.start_child()

    def _stop(self, signum, frame) -> None:
        if not self.stopping:
            self.stopping = True
            if self.child:
                try:
                    os.kill(self.child, signal.SIGTERM)  # RQ's warm stop: the job ends first
                except ProcessLookupError:
                    pass


@click.command("worker", short_help="Run a worker for the hub's jobs (a supervised work process).")
@click.option("--queues", default=",".join(QUEUES), show_default=True,
              help="Comma-separated queues, most urgent first.")
@click.option("--burst", is_flag=True, help="Run in this process until the queues are empty (tests, one-off runs).")
@click.option("--name", default=None, help="Worker name (default: host and pid).")
@click.option("--no-scheduler", is_flag=True, help="Do not run periodic jobs from this worker.")
@click.option("--metrics-port", type=int, default=None, envvar="HUB_WORKER_METRICS_PORT",
              help="Serve this machine's metrics for scrapers on this port (a machine without a web process).")
@click.option("--metrics-address", default="127.0.0.1", show_default=True, envvar="HUB_WORKER_METRICS_ADDRESS",
              help="The address the metrics port listens on (only the operators' network).")
@with_appcontext
def worker_command(queues, burst, name, no_scheduler, metrics_port, metrics_address):
    """Run a worker for the hub's jobs: a supervisor, its work process and the scheduler. Run as
    many as you like, on as many machines."""
    app = current_app._get_current_object()
    names = [q.strip() for q in queues.split(",") if q.strip()]

    # A process's first query configures the mappers under a global lock; a process forked at
    # that moment inherits the lock held and hangs. Configure them before any thread or fork.
    configure_mappers()
    if burst:
        promote_scheduled_jobs(app)
        raise SystemExit(work(app, names, name, burst=True))
    if metrics_port:
        serve_metrics(metrics_port, metrics_address)
    scheduler = None
    if not no_scheduler:
        scheduler = Scheduler(app)
        scheduler.start()
    try:
        import socket

        Supervisor(app, names, name or f"{socket.gethostname()}.{os.getpid()}").run()
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
