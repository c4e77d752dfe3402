"""`hub worker`: real worker processes that crash, retry, survive Redis, and share periodic slots."""
from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from unittest import mock

import pytest
import sqlalchemy as sa
from rq.job import Job

from hub.extensions import db, get_redis
from hub.inbox import WebhookDelivery, job_id
from hub.jobs import get_queue
from hub.models import utcnow
from hub.plugin import PeriodicJob
from hub.worker import HubWorker, UsableConnections, connection_offset, connection_slot, enqueue_periodic_jobs
from tests.hub.conftest import hub_test_plugins
from tests.plugins import tiny_example
from tests.stack import children_of
from tests.workers import make_connection, parent_of, wait_for, workers  # noqa: F401 (fixture)

TINY = "tests.plugins.tiny_example"
SECRET = {"X-Tiny-Secret": "tiny-secret"}

#: Read by the scheduler through HUB_PERIODIC_JOB_MODULES in the tests below.
HUB_PERIODIC_JOBS = [PeriodicJob(tiny_example.tick, timedelta(seconds=10), per_connection=True)]


@pytest.fixture(autouse=True)
def empty_redis(redis_server):
    # conftest's reset skips Redis on a database's first use: start every test from an empty Redis.
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": hub_test_plugins(), "HUB_SWEEP_AFTER_SECONDS": 0}


def reload(delivery_id) -> WebhookDelivery:
    db.session.expire_all()
    return db.session.get(WebhookDelivery, delivery_id)


TICK = "tests.plugins.tiny_example.tick"


def run_id(connection_id: str, now: float, interval: float = 10) -> str:
    """The job id of a connection's current periodic run (its slot counts from its offset)."""
    return f"periodic-tests-plugins-tiny_example-tick-{connection_id}-{connection_slot(TICK, connection_id, interval, now)}"


def test_periodic_jobs_are_enqueued_once_per_slot_and_per_usable_connection(app):
    app.config["HUB_PERIODIC_JOB_MODULES"] = ["hub.outbox", "tests.hub.test_worker", "hub.does_not_exist"]
    usable, revoked = make_connection(), make_connection(org_name="Other", revoked_at=utcnow())
    now = 1_000_000.5 + connection_offset(TICK, usable.id, 10)  # just after the connection's run time
    first = enqueue_periodic_jobs(app, now)
    assert sorted(first) == sorted([
        "periodic-tests-plugins-tiny_example-tick-hub-16666",          # the plugin's, every 60 s
        "periodic-hub-outbox-sweep-hub-33333",                         # the hub's sweeper, every 30 s
        run_id(usable.id, now),                                        # per connection, every 10 s
    ])
    assert revoked.id not in "".join(first)
    # Another worker in the same slot enqueues nothing.
    assert enqueue_periodic_jobs(app, now + 1) == []
    # The next slot while the last slot's run still waits in its queue (a backlog): that run
    # will do the work, so none is added; once it has run, the next slot runs again.
    assert enqueue_periodic_jobs(app, now + 10) == []
    get_queue("sync").fetch_job(run_id(usable.id, now)).delete()
    assert enqueue_periodic_jobs(app, now + 20) == [run_id(usable.id, now + 20)]
    assert get_queue("sync").count == 3  # the plugin's tick, the sweeper and the connection's latest


def test_the_scheduler_settles_a_slot_once_and_still_sees_a_connection_added_in_it(app):
    """Five ticks a second in every worker: a slot this process already settled costs no Redis
    round trip (``tried``), yet a connection created during the slot gets its run at once."""
    app.config["HUB_PERIODIC_JOB_MODULES"] = ["hub.outbox", "tests.hub.test_worker"]
    first = make_connection()
    # Just after the connection's run time: its slot holds for the seconds below.
    now, tried = 1_000_000.5 + connection_offset(TICK, first.id, 10), {}
    assert len(enqueue_periodic_jobs(app, now, tried=tried)) == 3
    redis = get_redis(app)
    for key in redis.scan_iter("hub:periodic:*"):  # as if the claims had expired
        redis.delete(key)
    get_queue("sync").empty()
    get_queue("default").empty()
    assert enqueue_periodic_jobs(app, now + 1, tried=tried) == []
    added = make_connection(org_name="Added")
    assert enqueue_periodic_jobs(app, now + 2, tried=tried) == [run_id(added.id, now + 2)]
    # Without the memory, the same tick would have claimed the settled slots again.
    assert len(enqueue_periodic_jobs(app, now + 3)) == 3


def test_the_scheduler_reads_the_usable_connections_every_few_seconds_not_every_tick(app):
    """The scheduler thread's ``UsableConnections``: one query per plugin every ``every``
    seconds; a connection made in between gets its first run at the next read."""
    app.config["HUB_PERIODIC_JOB_MODULES"] = ["tests.hub.test_worker"]
    make_connection()
    now, tried, connections = 1_000_000.0, {}, UsableConnections(every=5)
    assert "periodic-tests-plugins-tiny_example-tick-hub-16666" in enqueue_periodic_jobs(
        app, now, tried=tried, connections=connections)
    added = make_connection(org_name="Added").id
    queries = []

    def seen(conn, cursor, statement, *args):
        queries.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert run_id(added, now + 2) not in enqueue_periodic_jobs(app, now + 2, tried=tried, connections=connections)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert not [q for q in queries if "from connection" in q.lower()]  # not read again
    assert run_id(added, now + 6) in enqueue_periodic_jobs(app, now + 6, tried=tried, connections=connections)


def test_the_ids_are_read_again_only_when_the_usable_connections_changed(app):
    """On PostgreSQL, a re-read first asks for a fingerprint of the usable connections (one row):
    the ids themselves are read only when one came or went."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the fingerprint is PostgreSQL's (elsewhere the ids are read each time)")
    first = make_connection().id
    connections = UsableConnections(every=5)
    assert connections.of(None, 1000.0) == [first]
    queries = []

    def seen(conn, cursor, statement, *args):
        queries.append(statement.lower())

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert connections.of(None, 1006.0) == [first]
        assert len(queries) == 1 and "count(" in queries[0]  # the fingerprint, not the ids
        other = make_connection(org_name="Other").id
        queries.clear()
        assert sorted(connections.of(None, 1012.0)) == sorted([first, other])
        assert connections.take_new(None) == {other}
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert any("count(" not in q and "from connection" in q for q in queries)  # read again


def test_per_connection_runs_are_spread_over_their_interval_once_across_the_fleet(app, monkeypatch):
    """Each connection's runs fall at its own offset within the interval: every tick enqueues the
    runs of the second that came due, one worker of the fleet does each second, and over an
    interval every connection runs exactly once (before: all of them at the slot boundary). A
    fleet starting after nobody ran (all down) catches the last interval up, a few seconds a tick."""
    app.config["HUB_PERIODIC_JOB_MODULES"] = ["tests.hub.test_worker"]
    ids = [make_connection(org_name=f"Org {n}").id for n in range(40)]
    monkeypatch.setattr("hub.worker.RUNS_PER_TICK", 10)
    one, other = ({}, UsableConnections(every=60)), ({}, UsableConnections(every=60))
    start = 1_000_000.0
    runs: dict[str, int] = {}
    per_tick = []
    for second in range(0, 21):  # two intervals of 10 s, a tick a second, two workers
        ticked = [run for tried, connections in (one, other) for run in enqueue_periodic_jobs(
            app, start + second, tried=tried, connections=connections) if "-hub-" not in run]
        per_tick.append(len(ticked))
        for run in ticked:
            runs[run] = runs.get(run, 0) + 1
        get_queue("sync").empty()  # the workers ran them
    assert set(runs.values()) == {1}  # no run twice, by either worker
    # Every connection, once at each of its times from the last interval before the start
    # (caught up) to the end: its offset in each interval.
    expected = sorted(run_id(cid, start + 10 * k + connection_offset(TICK, cid, 10)) for cid in ids
                      for k in range(-1, 3) if start - 9 <= start + 10 * k + connection_offset(TICK, cid, 10) < start + 21)
    assert sorted(runs) == expected, (sorted(set(runs) - set(expected)), sorted(set(expected) - set(runs)))
    # Spread: once caught up, no tick carries the fleet (two workers: one second each); catching
    # up, a worker enqueues RUNS_PER_TICK runs a tick at most (whole seconds: one may go over).
    second = max(sum(1 for cid in ids if int(connection_offset(TICK, cid, 10)) == s) for s in range(10))
    assert max(per_tick[6:]) <= second < len(ids) / 2 and max(per_tick) <= 2 * (10 + second)
    offset = connection_offset(TICK, ids[0], 10)
    assert 0 <= offset < 10 and connection_offset(TICK, ids[0], 10) == offset  # stable


def test_a_worker_joining_a_running_fleet_runs_nothing_twice(app):
    """A new worker settles the last interval again: every second another worker did is claimed
    already, so it enqueues only the runs that came due since (none the fleet has run)."""
    app.config["HUB_PERIODIC_JOB_MODULES"] = ["tests.hub.test_worker"]
    ids = [make_connection(org_name=f"Org {n}").id for n in range(20)]
    running = ({}, UsableConnections(every=60))
    start = 1_000_000.0
    for second in range(0, 15):
        enqueue_periodic_jobs(app, start + second, tried=running[0], connections=running[1])

    def join() -> list[str]:
        joined = ({}, UsableConnections(every=60))
        return sorted(run for second in range(15, 20) for run in enqueue_periodic_jobs(
            app, start + second, tried=joined[0], connections=joined[1]) if "-hub-" not in run)

    came_due = sorted(run_id(cid, start + 10 * k + connection_offset(TICK, cid, 10)) for cid in ids
                      for k in (1, 2) if start + 15 <= start + 10 * k + connection_offset(TICK, cid, 10) < start + 20)
    assert join() == came_due
    # Without the running worker's claims (a fleet that was down), the same ticks catch the last
    # interval up: every connection runs (once: its next run waits while this one is queued).
    get_redis(app).flushdb()
    caught_up = [run.split("-tick-")[1].rsplit("-", 1)[0] for run in join()]
    assert sorted(caught_up) == sorted(ids)


def test_a_long_interval_with_few_connections_costs_a_claim_per_connection_not_per_second(app):
    """Buckets are a tick long: an interval of years has a billion of them. Only the occupied
    ones are claimed (the benchmarks push a job's runs away with such an interval)."""
    app.config["HUB_PERIODIC_JOB_MODULES"] = ["tests.hub.test_worker"]
    app.config["HUB_PERIODIC_INTERVALS"] = {TICK: 10 ** 9}
    ids = {make_connection(org_name=f"Org {n}").id for n in range(3)}
    claims = []
    real_set = type(get_redis(app)).set

    def counted(client, name, *args, **kwargs):
        if ":bucket:" in str(name):
            claims.append(name)
            assert len(claims) < 100, "a claim per second of the interval"
        return real_set(client, name, *args, **kwargs)

    tried, connections = {}, UsableConnections(every=60)
    with mock.patch.object(type(get_redis(app)), "set", counted):
        first = [run for run in enqueue_periodic_jobs(app, 2e9, tried=tried, connections=connections)
                 if "-hub-" not in run]
        later = [run for run in enqueue_periodic_jobs(app, 2e9 + 1, tried=tried, connections=connections)
                 if "-hub-" not in run]
    assert {run.split("-tick-")[1].rsplit("-", 1)[0] for run in first} == ids  # caught up
    assert later == [] and len(claims) == 3


def test_due_jobs_are_promoted_to_the_front_of_their_queue_and_only_those(app):
    """The scheduler thread moves due retries and given-back jobs to their queue, ahead of new
    work; a job not yet due stays, one another worker took from the registry is left to it, and
    an entry whose job is gone is dropped."""
    from datetime import UTC, datetime

    from hub.worker import promote_scheduled_jobs

    redis = get_redis(app)
    queue = get_queue("default")
    queue.empty()
    registry = queue.scheduled_job_registry
    for leftover in registry.get_job_ids():
        registry.remove(leftover)
    queue.enqueue("tests.plugins.tiny_example.tick", 0, job_id="new-work")
    now = time.time()
    for name, due in (("due-1", now - 2), ("due-2", now - 1), ("taken", now - 1), ("later", now + 60)):
        queue.enqueue_at(datetime.fromtimestamp(due + 1, UTC), "tests.plugins.tiny_example.tick", 1, job_id=name)
        redis.zadd(registry.key, {name: due})
    gone = queue.enqueue_at(datetime.fromtimestamp(now, UTC), "tests.plugins.tiny_example.tick", 2, job_id="gone")
    redis.zadd(registry.key, {"gone": now - 1})
    gone.delete(remove_from_queue=False)
    redis.zadd(registry.key, {"gone": now - 1})  # its entry outlived its hash
    redis.zrem(registry.key, "taken")  # another worker claimed it first
    assert promote_scheduled_jobs(app) == 2
    assert queue.get_job_ids() == ["due-2", "due-1", "new-work"]  # ahead of new work, "taken" not here
    assert queue.fetch_job("due-1").get_status() == "queued"
    assert registry.get_job_ids() == ["later"]
    assert promote_scheduled_jobs(app) == 0


def test_the_worker_heartbeat_is_one_round_trip_with_the_same_effect(app):
    """RQ's heartbeat before every job: its hash field and both expiries, sent together."""
    import redis as redis_lib

    worker = HubWorker([get_queue("webhooks")], connection=get_redis(), name="beat-test")
    get_redis().sadd(worker.executions_key, "a-job-it-runs")
    sent = []
    original = redis_lib.Redis.execute_command

    def counting(self, *args, **options):
        sent.append(args[0])
        return original(self, *args, **options)
    with mock.patch.object(redis_lib.Redis, "execute_command", counting):
        worker.heartbeat(timeout=120)
    assert sent == []  # nothing sent one command at a time: one pipeline
    redis = get_redis()
    assert redis.hget(worker.key, "last_heartbeat") is not None
    assert 0 < redis.ttl(worker.key) <= 120 and 0 < redis.ttl(worker.executions_key) <= 120
    redis.delete(worker.key, worker.executions_key)


def test_abandoned_jobs_are_noticed_after_the_grace_not_after_a_minute(app):
    worker = HubWorker([get_queue("webhooks")], connection=get_redis(), job_monitoring_interval=5)
    worker.heartbeat_grace = 10
    job = Job.create("tests.plugins.tiny_example.tick", args=[1], connection=get_redis(), timeout=300)
    assert worker.get_heartbeat_ttl(job) == 15
    assert worker.get_heartbeat_ttl(job, working_time=298) == 12


# --- real worker processes -------------------------------------------------------------------

#: Short retry intervals and scheduler ticks for the workers (environment) and the test app (config).
FAST = {"HUB_RETRY_INTERVALS": "1,1,1", "HUB_SCHEDULER_TICK": "0.5"}
FAST_CONFIG = {"HUB_RETRY_INTERVALS": [1, 1, 1], "HUB_SCHEDULER_TICK": 0.5}


def post(client, conn, key, **payload):
    response = client.post(f"/webhooks/tiny_example/{conn.endpoint_id}", data=json.dumps({"id": key, **payload}),
                           headers=SECRET)
    assert response.status_code == 200, response.data
    return db.session.scalar(db.select(WebhookDelivery.id).filter_by(dedupe_key=str(key)))


def status_of(delivery_id):
    return reload(delivery_id).status


@pytest.mark.slow
def test_kill_9_mid_job_runs_the_job_again_within_a_minute_with_one_effect(pg_app, workers, capsys):
    pg_app.config.update(FAST_CONFIG)
    client = pg_app.test_client()
    conn = make_connection()
    workers.start(2, **FAST)
    r = get_redis()
    delivery_id = post(client, conn, "crash", sleep=3)
    horse = int(wait_for(lambda: r.get("tiny:pid:crash"), 60, message="the job to start"))
    worker = parent_of(horse)
    workers.kill(worker)  # the worker first, so it cannot record the horse's death
    workers.kill(horse)
    killed_at = time.monotonic()
    wait_for(lambda: status_of(delivery_id) == "done", 60, message="the job to run again within a minute")
    recovered_in = time.monotonic() - killed_at
    with capsys.disabled():
        print(f"\n[kill -9 recovery] job done again {recovered_in:.1f}s after the kill")
    row = reload(delivery_id)
    assert row.attempts == 2
    assert r.get("tiny:runs:crash") == b"2"
    assert r.get("tiny:effects") == b"1"


def work_process_of(supervisor_pid: int, but_not: int | None = None, timeout: float = 30) -> int:
    """The pid of the supervisor's work process (a new one, when ``but_not`` names the old)."""
    return wait_for(lambda: next((p for p in children_of(supervisor_pid) if p != but_not), None), timeout,
                    message="the supervisor's work process")


@pytest.mark.slow
def test_kill_9_of_the_work_process_hands_its_job_back_at_once(pg_app, workers, capsys):
    """The supervisor sees its work process die: the job goes back to RQ now (not when its claim
    lapses), a new work process runs it, and its effect happens once."""
    pg_app.config.update(FAST_CONFIG)
    client = pg_app.test_client()
    conn = make_connection()
    (supervisor,) = workers.start(1, **FAST)
    r = get_redis()
    delivery_id = post(client, conn, "crash", sleep=3)
    process = int(wait_for(lambda: r.get("tiny:pid:crash"), 60, message="the job to start"))
    assert parent_of(process) == supervisor.pid
    workers.kill(process)
    killed_at = time.monotonic()
    wait_for(lambda: status_of(delivery_id) == "done", 30, message="the job to run again")
    recovered_in = time.monotonic() - killed_at
    with capsys.disabled():
        print(f"\n[work process kill -9] job done again {recovered_in:.1f}s after the kill")
    assert recovered_in < 10  # the claim's own lapse would take heartbeat + grace (15 s)
    assert supervisor.poll() is None
    assert int(r.get("tiny:pid:crash")) == work_process_of(supervisor.pid, but_not=process)
    assert (reload(delivery_id).attempts, r.get("tiny:runs:crash"), r.get("tiny:effects")) == (2, b"2", b"1")


@pytest.mark.slow
def test_a_job_past_its_timeout_is_stopped_and_the_worker_goes_on(pg_app, workers):
    """A job stuck past its timeout: stopped by the timeout signal, or, when it cannot hear it
    (stuck outside Python), its process is killed by the supervisor; the next job runs."""
    # Jobs get their timeout and retries when enqueued; one retry is enough to show the worker
    # goes on (each run of the deaf job costs its timeout, the grace and a new process).
    pg_app.config.update(FAST_CONFIG, HUB_JOB_TIMEOUT=2, HUB_RETRY_INTERVALS=[1])
    pg_app.extensions.pop("hub.queues", None)
    client = pg_app.test_client()
    conn = make_connection()
    (supervisor,) = workers.start(1, HUB_JOB_HEARTBEAT_GRACE="2", **{**FAST, "HUB_RETRY_INTERVALS": "1"})
    r = get_redis()
    hung = post(client, conn, "hung", sleep=60)
    deaf = post(client, conn, "deaf", sleep=60, deaf=True)
    after = post(client, conn, "after")
    wait_for(lambda: status_of(after) == "done", 60, message="the job after the stuck ones to run")
    assert r.get("tiny:runs:hung") and r.get("tiny:runs:deaf")
    assert status_of(hung) != "done" and status_of(deaf) != "done"
    assert supervisor.poll() is None
    log = open(supervisor.log_path).read()
    assert "hub.worker.job_overran" in log and "hub.worker.process_died" in log


@pytest.mark.slow
def test_a_work_process_that_grew_too_big_is_replaced_after_its_job(pg_app, workers):
    pg_app.config.update(FAST_CONFIG)
    client = pg_app.test_client()
    conn = make_connection()
    (supervisor,) = workers.start(1, HUB_WORKER_MAX_RSS_MB="150", **FAST)
    r = get_redis()
    fat = post(client, conn, "fat", leak=200)
    wait_for(lambda: status_of(fat) == "done", 60, message="the leaking job to finish")
    first = int(r.get("tiny:pid:fat"))
    after = post(client, conn, "after")
    wait_for(lambda: status_of(after) == "done", 60, message="the next job")
    assert int(r.get("tiny:pid:after")) != first and parent_of(int(r.get("tiny:pid:after"))) == supervisor.pid
    assert r.get("tiny:effects") == b"2" and reload(fat).attempts == 1
    assert "hub.worker.recycle reason=memory" in open(supervisor.log_path).read()


@pytest.mark.slow
def test_retries_then_success_and_after_the_last_retry_failed_and_retryable(pg_app, workers):
    pg_app.config.update(FAST_CONFIG)
    client = pg_app.test_client()
    conn = make_connection()
    workers.start(1, **FAST)
    flaky = post(client, conn, "flaky", fail=2)
    broken = post(client, conn, "broken", fail=99)
    wait_for(lambda: status_of(flaky) == "done", 60, message="the flaky delivery to succeed")
    wait_for(lambda: status_of(broken) == "failed", 60, message="the broken delivery to fail")
    assert reload(flaky).attempts == 3
    row = reload(broken)
    assert row.attempts == 4 and "failing on purpose" in row.error
    assert job_id(broken) in get_queue("webhooks").failed_job_registry.get_job_ids()
    assert get_redis().get("tiny:effects") == b"1"


@pytest.mark.slow
def test_redis_down_during_intake_then_processed_after_it_returns(pg_app, workers, redis_server):
    client = pg_app.test_client()
    conn = make_connection()
    redis_server.stop()
    try:
        ids = [post(client, conn, f"r{i}") for i in range(3)]
    finally:
        redis_server.start()
    assert {status_of(i) for i in ids} == {"pending"}
    workers.start(1, HUB_PERIODIC_INTERVALS="hub.outbox.sweep=1", **FAST)
    wait_for(lambda: {status_of(i) for i in ids} == {"done"}, 60, message="the sweeper and the worker")
    assert get_redis().get("tiny:effects") == b"3"


@pytest.mark.slow
def test_a_worker_busy_when_redis_goes_away_works_again_when_it_returns(pg_app, workers, redis_server):
    client = pg_app.test_client()
    conn = make_connection()
    (proc,) = workers.start(1, **FAST)
    r = get_redis()
    post(client, conn, "busy", sleep=2)
    wait_for(lambda: r.get("tiny:pid:busy"), 60, message="the job to start")
    redis_server.stop()
    try:
        time.sleep(3)  # the job ends while Redis is away: RQ's work loop fails and gives up
    finally:
        redis_server.start()
    assert proc.poll() is None, "the worker exited"
    after = post(client, conn, "after")
    wait_for(lambda: status_of(after) == "done", 60, message="the same worker to take new work")


@pytest.mark.slow
def test_several_workers_enqueue_each_periodic_slot_once(pg_app, workers):
    workers.start(3, HUB_PERIODIC_INTERVALS=f"{TINY}.tick=1", **FAST)
    r = get_redis()
    ticks = wait_for(lambda: (lambda t: t if len(t) >= 4 else None)(r.lrange("tiny:ticks", 0, -1)), 60,
                     message="four periodic ticks")
    assert len(ticks) == len(set(ticks)), ticks  # one run per slot, whichever worker enqueued it


def test_a_work_process_is_forked_only_while_the_scheduler_thread_is_parked(app, monkeypatch):
    """A fork during a scheduler tick could inherit a lock the tick holds (Redis or database pool)."""
    import threading

    from hub.worker import SCHEDULER_TICK_LOCK, Supervisor

    forked = threading.Event()
    monkeypatch.setattr(os, "fork", lambda: forked.set() or 12345)
    supervisor = Supervisor(app, ["default"], "test")
    with SCHEDULER_TICK_LOCK:  # a tick in progress
        thread = threading.Thread(target=supervisor.start_child)
        thread.start()
        assert not forked.wait(0.5)
    assert forked.wait(5)
    thread.join(5)
    assert supervisor.child == 12345 and supervisor.child_name == "test.1"

def test_the_work_loop_has_its_own_redis_client_with_a_timeout_longer_than_its_wait(app):
    """RQ lengthens the socket timeout of the client it is given; the hub's own client (jobs, the
    scheduler) keeps its short one, and the loop's blocking dequeue never times out on the socket."""
    from hub.worker import make_worker

    worker = make_worker(app, ["default"], "test-timeouts")
    loop = worker.connection.connection_pool.connection_kwargs["socket_timeout"]
    assert worker.connection is not get_redis()
    assert loop > worker.dequeue_timeout
    assert get_redis().connection_pool.connection_kwargs["socket_timeout"] == 5


def test_an_attempt_that_fails_and_is_retried_logs_warnings_without_a_traceback(pg_app, workers):
    """The outbox says which work failed and why (one line); the job wrapper and the worker add
    one line each. Before: RQ's ERROR with a traceback, and the wrapper's traceback of the
    ``WorkFailed`` that only showed where the failure was turned into it."""
    pg_app.config.update(FAST_CONFIG)
    pg_app.extensions.pop("hub.queues", None)
    client = pg_app.test_client()
    conn = make_connection()
    (supervisor,) = workers.start(1, **FAST)
    flaky = post(client, conn, "flaky", fail=1)
    wait_for(lambda: status_of(flaky) == "done", 60, message="the flaky delivery to succeed on its retry")
    log = open(supervisor.log_path).read()
    assert "hub.outbox.attempt_failed" in log and "hub.jobs.failed" in log and "hub.worker.job_failed" in log
    assert " ERROR " not in log and "Traceback" not in log, log
