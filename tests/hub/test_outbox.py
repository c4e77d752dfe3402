"""Durable work: schedule after commit, claim under a lease, finish with the work, sweep, resume.

Every kind (deliveries, emails, a plugin's writes) lives on this one mechanism; these tests use
the tiny plugin's ``echo`` kind, whose row says how a run behaves.
"""
from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest

from hub import outbox
from hub.extensions import db, get_redis
from hub.jobs import get_queue
from hub.models import utcnow
from hub.outbox import (
    counts_by_status,
    kind_of,
    resume_connection,
    retry_failed,
    schedule,
    schedule_once,
    sweep,
)
from hub.signals import connection_restored
from tests.hub.conftest import hub_test_plugins
from tests.plugins.tiny_example.work import Echo, echo
from tests.workers import make_connection

KIND = kind_of(echo)


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": hub_test_plugins(), "HUB_SWEEP_AFTER_SECONDS": 0}


@pytest.fixture(autouse=True)
def empty_redis(redis_server):
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()


def add(key, behaviour="ok", **fields) -> int:
    row = schedule(echo, Echo(key=key, behaviour=behaviour, **fields))
    db.session.commit()
    return row.id


def reload(row_id) -> Echo:
    db.session.expire_all()
    return db.session.get(Echo, row_id)


def queued() -> list[str]:
    return get_queue("default").job_ids


def effects() -> int:
    return int(get_redis().get("tiny:echo:effects") or 0)


def last_try():
    return mock.patch.object(outbox, "get_current_job", return_value=mock.Mock(retries_left=0))


def a_try_with_retries_left():
    return mock.patch.object(outbox, "get_current_job", return_value=mock.Mock(retries_left=2, meta={}))


def test_the_job_is_enqueued_after_commit_never_before_and_not_after_a_rollback(app):
    schedule(echo, Echo(key="rolled-back"))
    assert queued() == []
    db.session.rollback()
    assert queued() == [] and db.session.scalar(db.select(Echo)) is None
    row_id = add("kept")
    assert queued() == [KIND.job_id(row_id)]


def test_schedule_once_inside_a_transaction_enqueues_when_the_transaction_commits(app):
    """Its savepoint's release is not the commit: a job enqueued then could run before its row
    is visible to any other process, find nothing, and leave the row to the sweeper."""
    db.session.add(Echo(key="before"))
    db.session.flush()
    assert schedule_once(echo, Echo(key="inside")) is True
    with db.session.begin_nested():  # a caller's own savepoint, released before the commit
        db.session.add(Echo(key="nested"))
    assert queued() == []
    db.session.commit()
    row_id = db.session.scalar(db.select(Echo.id).filter_by(key="inside"))
    assert queued() == [KIND.job_id(row_id)]


def test_schedule_once_keeps_the_callers_other_rows_on_a_duplicate(app):
    add("k")
    other = Echo(key="other")
    db.session.add(other)
    assert schedule_once(echo, Echo(key="k")) is False  # the duplicate rolls back its savepoint only
    db.session.commit()
    assert {r.key for r in db.session.scalars(db.select(Echo))} == {"k", "other"}


def test_a_run_claims_does_the_work_once_and_records_the_outcome(app):
    row_id = add("once")
    assert echo(row_id) == {"outcome": "done", "status": "done"}
    assert echo(row_id) == {"outcome": "already_done", "status": "done"}
    row = reload(row_id)
    assert (row.status, row.attempts, row.outcome, row.summary) == ("done", 1, "done", "echoed once")
    assert row.lease_until is None and row.finished_at is not None and effects() == 1


def test_a_run_while_another_holds_the_lease_leaves_it_alone(app):
    row_id = add("leased")
    row = reload(row_id)
    row.status, row.lease_until, row.attempts = "running", utcnow() + timedelta(minutes=5), 1
    db.session.commit()
    assert echo(row_id)["outcome"] == "in_flight"
    assert effects() == 0
    row = reload(row_id)
    row.lease_until = utcnow() - timedelta(seconds=1)  # the run that held it died
    db.session.commit()
    assert echo(row_id)["outcome"] == "done"
    assert reload(row_id).attempts == 2  # the next run knows an earlier one may have acted


def test_a_failure_is_retried_then_failed_after_the_last_try_with_its_reason(app):
    row_id = add("flaky", "fail:5")
    with a_try_with_retries_left(), pytest.raises(outbox.WorkFailed) as raised:
        echo(row_id)
    assert "failing on purpose" not in str(raised.value)  # RQ sees the kind and row, not the data
    row = reload(row_id)
    assert (row.status, row.lease_until) == ("pending", None) and "failing on purpose" in row.error
    with last_try(), pytest.raises(outbox.WorkFailed):
        echo(row_id)
    row = reload(row_id)
    assert (row.status, row.attempts, row.outcome) == ("failed", 2, "failed")
    assert retry_failed(echo, Echo.id == row_id) == 1
    assert reload(row_id).status == "pending" and KIND.job_id(row_id) in queued()


def test_refused_fails_at_once_with_the_readable_reason(app):
    row_id = add("no", "refuse")
    with a_try_with_retries_left():
        assert echo(row_id)["outcome"] == "failed"
    row = reload(row_id)
    assert (row.status, row.error) == ("failed", "the provider refused this for good")


def test_work_that_returns_failed_keeps_its_reason_for_the_card(app):
    row_id = add("no", "give_up")
    with a_try_with_retries_left():
        assert echo(row_id)["outcome"] == "failed"
    row = reload(row_id)
    assert (row.status, row.error) == ("failed", "gave up after writing its own line")


def test_defer_gives_the_worker_back_without_spending_an_attempt(app):
    from rq import Retry

    row_id = add("later", "defer")
    with a_try_with_retries_left():
        result = outbox.run(KIND, row_id)
    assert isinstance(result, Retry) and result.intervals == [1] and result.max > 1000
    row = reload(row_id)
    assert (row.status, row.attempts) == ("pending", 0) and row.due_at > utcnow()
    assert echo(row_id)["outcome"] == "done" and reload(row_id).attempts == 1


def test_an_unusable_connection_pauses_and_restoring_it_resumes(app):
    conn = make_connection(revoked_at=utcnow(), revoked_reason="invalid_grant")
    row_id = add("waits", connection_id=conn.id)
    assert echo(row_id)["outcome"] == "paused"
    assert reload(row_id).status == "paused" and effects() == 0
    get_queue("default").empty()

    conn.revoked_at = None
    db.session.commit()
    connection_restored.send(app, connection=conn)
    [job] = get_queue("webhooks").get_jobs()
    assert job.func_name == "hub.outbox.resume_connection" and job.args == [conn.id]
    assert resume_connection(conn.id) == {"resumed": 1}
    assert reload(row_id).status == "pending" and KIND.job_id(row_id) in queued()
    assert echo(row_id)["outcome"] == "done"


def test_the_handler_raising_connection_unusable_pauses_too(app):
    conn = make_connection()
    row_id = add("revoked-now", "unusable", connection_id=conn.id)
    assert echo(row_id)["outcome"] == "paused"
    assert reload(row_id).error == "revoked in the provider"


def test_the_sweeper_enqueues_what_lost_its_job_and_leaves_live_jobs_alone(app, redis_server):
    ids = [add(f"s{i}") for i in range(3)]
    redis_server.stop()  # restarted without persistence: the rows are pending, the jobs gone
    redis_server.start()
    assert queued() == []
    assert sweep()["enqueued"] == 3
    assert sorted(queued()) == sorted(KIND.job_id(i) for i in ids)
    assert sweep()["enqueued"] == 0


def test_two_sweeps_that_overlap_enqueue_a_lost_job_once(app):
    """A job id enqueued twice runs twice at once; the second sweep, which read the job as
    missing before the first enqueued it, leaves it alone."""
    row_id = add("lost")
    get_queue("default").empty()  # the job is lost
    assert sweep()["enqueued"] == 1
    get_queue("default").empty()  # what the overlapping sweep saw: still missing
    assert sweep()["enqueued"] == 0
    assert reload(row_id).status == "pending"


def test_the_sweeper_gives_up_after_max_attempts(app):
    row_id = add("hopeless")
    row = reload(row_id)
    row.status, row.attempts, row.lease_until = "running", KIND.max_attempts, utcnow() - timedelta(minutes=1)
    db.session.commit()
    get_queue("default").empty()
    assert sweep()["gave_up"] == 1
    row = reload(row_id)
    assert row.status == "failed" and "gave up" in row.error


def test_the_sweeper_resumes_paused_work_of_a_usable_connection(app):
    conn = make_connection()
    row_id = add("missed-signal", connection_id=conn.id)
    row = reload(row_id)
    row.status = "paused"
    db.session.commit()
    get_queue("default").empty()
    assert sweep()["resumed"] == 1
    assert reload(row_id).status == "pending" and KIND.job_id(row_id) in queued()


def test_counts_by_status(app):
    add("a")
    echo(add("b"))
    counts = counts_by_status(echo)
    assert (counts["pending"], counts["done"], counts["failed"]) == (1, 1, 0)


def test_a_kind_with_admission_is_enqueued_for_the_moment_it_may_run(app):
    """``admit`` reserves what a run needs when the row is stored: the job waits in the
    scheduled registry for that exact moment (not the next whole second) and the row's due
    time says so; 0 means now; a Redis failure in it loses nothing (enqueued now)."""
    import time

    from redis.exceptions import ConnectionError as RedisConnectionError

    seen = []

    def admit(row, job_id):
        seen.append((row.key, job_id))
        return {"later": 2.5, "now": 0.0}.get(row.key) or (_ for _ in ()).throw(RedisConnectionError())

    with mock.patch.object(KIND, "admit", admit):
        before = time.time()
        later = add("later")
        assert queued() == []
        score = get_redis().zscore(get_queue("default").scheduled_job_registry.key, KIND.job_id(later))
        assert before + 2.4 < score < time.time() + 2.6 and score != int(score)
        assert reload(later).due_at > utcnow() + timedelta(seconds=2)
        now = add("now")
        broken = add("broken")
    assert seen == [("later", KIND.job_id(later)), ("now", KIND.job_id(now)), ("broken", KIND.job_id(broken))]
    assert queued() == [KIND.job_id(now), KIND.job_id(broken)]


def test_a_kind_not_ready_is_given_back_before_its_row_is_claimed(app):
    """``ready`` is asked in the row's own job before the claim: a run it gives back (``Defer``)
    writes nothing (no claim, no attempt spent, no second transaction to undo it), and the run
    that finds it ready goes on as usual. A row without a connection is not asked."""
    from rq import Retry
    from sqlalchemy import event

    from hub.jobs import Defer

    conn = make_connection()
    row_id, loose = add("tag", connection_id=conn.id), add("loose")
    asked = []

    def ready(connection_id):
        asked.append(connection_id)
        if len(asked) == 1:
            raise Defer(2.5, "no token yet")

    writes = []

    def count(conn_, cursor, statement, *args):
        if not statement.lstrip().upper().startswith("SELECT"):
            writes.append(statement)
    with mock.patch.object(KIND, "ready", ready), a_try_with_retries_left():
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            result = outbox.run(KIND, row_id)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert isinstance(result, Retry) and result.intervals == [3]
        assert [w for w in writes if "UPDATE" in w.upper() or "INSERT" in w.upper()] == []
        assert (reload(row_id).status, reload(row_id).attempts) == ("pending", 0)
        assert outbox.run(KIND, row_id).status == "done"
        db.session.commit()  # as the job does
        assert outbox.run(KIND, loose).status == "done"
        db.session.commit()
    assert asked == [conn.id, conn.id]
    assert (reload(row_id).status, reload(row_id).attempts) == ("done", 1) and effects() == 2


def test_a_job_given_back_by_ready_reads_nothing_from_the_database(app):
    """The row's job carries its connection's id (``meta``): ``ready`` is asked without a read
    of the row, so a run given back costs no database round trip at all."""
    from rq import Retry
    from sqlalchemy import event

    from hub.jobs import Defer

    conn = make_connection()

    def ready(connection_id):
        raise Defer(1.5, "no token yet")

    statements = []

    def count(conn_, cursor, statement, *args):
        statements.append(statement)
    with mock.patch.object(KIND, "ready", ready):
        row_id = add("tag", connection_id=conn.id)
        job = get_queue("default").fetch_job(KIND.job_id(row_id))
        assert job.meta == {outbox.META_CONNECTION: conn.id}
        with mock.patch.object(outbox, "get_current_job", return_value=job):
            event.listen(db.engine, "before_cursor_execute", count)
            try:
                result = outbox.run(KIND, row_id)
            finally:
                event.remove(db.engine, "before_cursor_execute", count)
    assert isinstance(result, Retry) and statements == []
    assert (reload(row_id).status, reload(row_id).attempts) == ("pending", 0)
