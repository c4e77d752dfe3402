"""Jobs: registered by a decorator, arguments that are ids only, one transaction, results without text."""
from __future__ import annotations

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from hub import jobs
from hub.extensions import db, get_redis
from hub.jobs import JobArgumentError, enqueue, get_queue, job, public_result, registered_jobs, spec_of
from hub.models import Organization
from hub.outcomes import Done, Several, Skipped
from tests.hub.conftest import hub_test_plugins
from tests.plugins import tiny_example
from tests.workers import workers  # noqa: F401 (fixture)


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": hub_test_plugins()}


@job("default")
def make_org(org_id: int):
    """A job for the tests below: one row, then an error when asked."""
    db.session.add(Organization(id=org_id, name=f"org {org_id}"))
    if org_id < 0:
        raise RuntimeError("rolled back with everything it wrote")
    return Done(what="made")


@job("default", retry=False)
def fail_quoting_customer_text(org_id: int):
    """Fails with text an organization controls, as a provider's error answer or SQL might."""
    raise RuntimeError(f"Ann Secret <img src=x onerror=alert({org_id})> was refused: {{'body': 1}}")


@pytest.mark.slow
def test_rq_keeps_only_the_name_and_error_type_of_a_failed_job(pg_app, workers):
    """The operators' dashboard prints RQ's traceback unescaped: it holds no customer text."""
    enqueue(fail_quoting_customer_text, 5, job_id="fails-quoting-5")
    done = workers.run_burst()
    stored = Job.fetch("fails-quoting-5", connection=get_redis(), serializer=JSONSerializer)
    assert stored.get_status() == "failed"
    text = stored.exc_info + "".join(str(r.exc_string) for r in stored.results())
    assert "JobFailed" in text and "RuntimeError" in text and "fail_quoting_customer_text" in text
    assert "Ann Secret" not in text and "onerror" not in text and "body" not in text
    assert stored.args == [5] and "Ann" not in stored.description
    # The whole exception is in the worker's own log, for whoever runs the hub.
    assert b"Ann Secret" in done.stdout + done.stderr


def test_the_decorator_registers_the_dotted_path_a_worker_imports(app):
    spec = spec_of(tiny_example.tick)
    assert spec.name == "tests.plugins.tiny_example.tick" and spec.queue == "sync"
    assert registered_jobs()[spec.name] is spec
    with pytest.raises(TypeError, match="module-level"):
        job()(lambda: None)
    with pytest.raises(TypeError, match="not a job"):
        spec_of(print)


@pytest.mark.parametrize("bad", ["Backend Engineer", "a\nb", "x" * 65, 1.5, None, {"id": 1}, True, "<b>"])
def test_arguments_are_ids_and_keys_only(app, bad):
    """No text an organization controls reaches a job's arguments (the operators' dashboard prints them)."""
    with pytest.raises(JobArgumentError):
        enqueue(tiny_example.tick, bad)
    assert get_queue("sync").count == 0


def test_ids_keys_and_uuids_are_accepted(app):
    enqueue(tiny_example.tick, "3f1c0a52-9a1b-4c55-8f3e-2b9b0e6f1d2a", job_id="t-1")
    enqueue(tiny_example.tick, 42, job_id="t-2")
    assert [j.args for j in get_queue("sync").get_jobs()] == [["3f1c0a52-9a1b-4c55-8f3e-2b9b0e6f1d2a"], [42]]


def test_one_transaction_per_job_committed_at_its_end_rolled_back_on_error(app):
    assert make_org(7) == {"outcome": "done", "status": "done"}
    db.session.expire_all()
    assert db.session.get(Organization, 7) is not None
    with pytest.raises(RuntimeError):
        make_org(-1)
    assert db.session.get(Organization, -1) is None


def test_rq_keeps_codes_and_numbers_never_words():
    assert public_result(Skipped(reason="not_in_stage", message="Ann Smith moved on")) == \
        {"outcome": "skipped", "status": "skipped", "reason": "not_in_stage"}
    assert public_result(Several(parts=(Done(what="x"), Skipped(reason="r", message="secret text")))) == {
        "outcome": "several", "status": "done",
        "parts": [{"outcome": "done", "status": "done"}, {"outcome": "skipped", "status": "skipped", "reason": "r"}]}
    assert public_result({"sent": 3, "who": "Ann"}) == {"sent": 3}
    assert public_result("Ann Smith") == "str"


def test_enqueueing_a_failed_job_again_starts_it_afresh_and_clears_the_failure(app):
    first = enqueue(tiny_example.tick, 1, job_id="again-1", retry=True)
    assert enqueue(tiny_example.tick, 1, job_id="again-1").id == first.id  # still queued
    queue = get_queue("sync")
    queue.remove(first)
    first.set_status("failed")
    queue.failed_job_registry.add(first, ttl=3600)
    again = enqueue(tiny_example.tick, 1, job_id="again-1", retry=True)
    assert again.get_status(refresh=True) == "queued" and "again-1" in queue.job_ids
    assert again.retries_left == len(app.config["HUB_RETRY_INTERVALS"])
    assert "again-1" not in queue.failed_job_registry.get_job_ids()


def test_job_statuses_tell_lost_jobs_in_one_round_trip(app):
    enqueue(tiny_example.tick, 1, job_id="kept")
    assert jobs.job_statuses(["kept", "lost"]) == {"kept": "queued", "lost": None}
    assert jobs.missing_jobs(["kept", "lost"]) == {"lost"}
    assert Job.exists("kept", connection=get_redis())


def test_job_ids_are_deterministic_safe_and_bounded():
    assert jobs.safe_job_id("a.b", "c:d", 3) == "a-b-c-d-3"
    long = jobs.safe_job_id("kind", "k" * 500)
    assert len(long) <= 120 and long == jobs.safe_job_id("kind", "k" * 500)
    assert long != jobs.safe_job_id("kind", "k" * 499)
