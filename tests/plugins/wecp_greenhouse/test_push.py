"""The completion PATCH (docs/providers/greenhouse.md#mark-complete), with ``responses`` standing in
for Greenhouse: exactly once per result, tried again while Greenhouse is down or busy, paused while
the connection is revoked, and said in the activity log and on the card when it fails for good."""
from __future__ import annotations

import re

import pytest
import requests
import responses

from hub.activity import ActivityLine
from hub.extensions import db
from hub.jobs import Defer, get_queue, safe_job_id
from hub.outbox import kind_of, resume_connection, run
from plugins.wecp_greenhouse.models import Completion, Interview
from plugins.wecp_greenhouse.push import mark_complete
from tests.conftest import csrf_token

from .conftest import BASE, callback, send_body
from .test_partner_api import complete, interviews

KIND = kind_of(mark_complete)


def sent_and_completed(app, customer, number: int = 12345) -> Completion:
    app.test_client().post(f"{BASE}/send_test", json=send_body(customer.test.id, number=number), headers=customer.auth)
    interview = next(i for i in interviews() if i.callback_url == callback(number))
    complete(interview)
    return db.session.scalar(db.select(Completion).filter_by(interview_id=interview.id))


class RqJob:
    """What ``run`` reads of the RQ job running it: its id and the retries RQ has left."""

    def __init__(self, row_id, retries_left: int):
        self.id, self.retries_left, self.meta = KIND.job_id(row_id), retries_left, {}


def attempt(row_id, retries_left: int | None = None, monkeypatch=None):
    """One run of the row's job, committed as its job commits (an exception is a failed attempt).
    ``retries_left``: run as RQ's job with that many retries left (else as the last try)."""
    if retries_left is not None:
        monkeypatch.setattr("hub.outbox.get_current_job", lambda: RqJob(row_id, retries_left))
    try:
        outcome = run(KIND, row_id)
        db.session.commit()
        return outcome
    except Defer:
        return "deferred"
    except Exception as exc:  # the attempt failed; its row says how
        return type(exc).__name__
    finally:
        db.session.rollback()
        db.session.expire_all()


def result_lines(status: str) -> list[str]:
    return [line.message for line in db.session.scalars(db.select(ActivityLine).filter_by(
        plugin_key="wecp_greenhouse", kind="result", status=status))]


def test_a_completed_test_patches_greenhouse_once_with_no_body(app, hogwarts):
    row = sent_and_completed(app, hogwarts)
    assert row is not None and row.key == f"result:{row.result_id}" and row.status == "pending"
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.PATCH, callback(), status=200)
        assert attempt(row.id).code == "told"
        assert attempt(row.id).code == "already_done"  # a duplicate job acts on nothing
        (call,) = greenhouse.calls
    assert call.request.method == "PATCH" and not call.request.body
    assert "Authorization" not in call.request.headers  # no partner credential configured here
    assert db.session.get(Completion, row.id).status == "done"
    assert result_lines("ok") == ["result sent to Greenhouse: it shows the score and the report link"]
    # The card's checklist ticks its last step.
    card = hogwarts.browser.get("/settings/integrations").get_data(as_text=True)
    assert re.search(r'class="step done">.{0,200}First result sent to Greenhouse', card, re.S)


def test_the_patch_carries_wecps_partner_credential_when_one_is_configured(app, hogwarts):
    app.config.update(GREENHOUSE_PATCH_USERNAME="wecp-partner", GREENHOUSE_PATCH_PASSWORD="s3cret")
    row = sent_and_completed(app, hogwarts)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.PATCH, callback(), status=204)
        attempt(row.id)
        assert greenhouse.calls[0].request.headers["Authorization"] == "Basic d2VjcC1wYXJ0bmVyOnMzY3JldA=="


def test_greenhouse_down_is_tried_again_then_failed_for_good_in_words(app, hogwarts, monkeypatch):
    row = sent_and_completed(app, hogwarts)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.PATCH, callback(), status=503)
        greenhouse.add(responses.PATCH, callback(), body=requests.ConnectTimeout())
        greenhouse.add(responses.PATCH, callback(), status=502)
        assert attempt(row.id, 2, monkeypatch) == "WorkFailed"
        assert db.session.get(Completion, row.id).status == "pending"  # tried again later
        assert "Greenhouse answered 503" in db.session.get(Completion, row.id).error
        assert attempt(row.id, 1, monkeypatch) == "WorkFailed"
        assert "ConnectTimeout" in db.session.get(Completion, row.id).error
        # HUB_RETRY_INTERVALS=1,2: the third try is the last, and the job says so itself.
        assert attempt(row.id, 0, monkeypatch).code == "failed"
        assert len(greenhouse.calls) == 3
    failed = db.session.get(Completion, row.id)
    assert failed.status == "failed" and "Greenhouse answered 502, 3 times" in failed.error
    (line,) = result_lines("failed")
    assert line.startswith("Greenhouse was not told of the result: Greenhouse answered 502, 3 times.")
    card = hogwarts.browser.get("/settings/integrations").get_data(as_text=True)
    assert "1 write to Greenhouse failed and will not be tried again by itself" in card


@pytest.mark.parametrize("status, words", [
    (404, "Greenhouse no longer has this test (404)"),
    (410, "Greenhouse no longer has this test (410)"),
    (401, "Greenhouse refused WeCP's call (401)"),
    (422, "Greenhouse refused the call (422)"),
])
def test_an_answer_retrying_cannot_change_fails_at_once_in_words(app, hogwarts, status, words):
    row = sent_and_completed(app, hogwarts)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.PATCH, callback(), status=status)
        assert attempt(row.id).code == "failed"
        assert len(greenhouse.calls) == 1
    assert words in db.session.get(Completion, row.id).error
    assert any(words in line for line in result_lines("failed"))


def test_a_429_gives_the_worker_back_without_spending_a_try(app, hogwarts):
    row = sent_and_completed(app, hogwarts)
    with responses.RequestsMock() as greenhouse:
        greenhouse.add(responses.PATCH, callback(), status=429, headers={"Retry-After": "30"})
        greenhouse.add(responses.PATCH, callback(), status=200)
        assert attempt(row.id) == "deferred"
        waiting = db.session.get(Completion, row.id)
        assert waiting.status == "pending" and waiting.attempts == 0
        assert attempt(row.id).code == "told"


def test_the_patch_waits_while_the_connection_is_revoked_and_goes_on_when_it_is_made_again(app, hogwarts):
    row = sent_and_completed(app, hogwarts)
    token = csrf_token(hogwarts.browser, "/settings/integrations")
    hogwarts.browser.post("/integrations/wecp_greenhouse/revoke", data={"csrf_token": token})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as greenhouse:
        greenhouse.add(responses.PATCH, callback(), status=200)
        assert attempt(row.id).code == "paused"
        assert len(greenhouse.calls) == 0
        hogwarts.browser.post("/integrations/wecp_greenhouse/connect", data={"csrf_token": token})
        # Connecting again enqueues the hub's resume job; a worker runs it.
        resume = get_queue("webhooks").fetch_job(safe_job_id("resume", row.connection_id))
        assert resume is not None
        resume_connection(row.connection_id)
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Completion, row.id).status == "pending"
        assert attempt(row.id).code == "told"
        assert len(greenhouse.calls) == 1


def test_an_address_no_longer_on_greenhouses_hosts_is_never_called(app, hogwarts):
    row = sent_and_completed(app, hogwarts)
    app.config["GREENHOUSE_APP_HOSTS"] = frozenset({"elsewhere.test"})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as greenhouse:
        greenhouse.add(responses.PATCH, callback(), status=200)
        assert attempt(row.id).code == "failed"
        assert len(greenhouse.calls) == 0


def test_a_send_without_url_is_polled_and_said_so(app, hogwarts):
    app.test_client().post(f"{BASE}/send_test", json=send_body(hogwarts.test.id, url=None), headers=hogwarts.auth)
    (interview,) = interviews()
    complete(interview)
    assert db.session.scalars(db.select(Completion)).all() == []
    assert result_lines("skipped") == ["Greenhouse gave no address to tell it of the result: it shows the result "
                                       "when it next asks WeCP (test_status)"]
    assert db.session.get(Interview, interview.id).result_id is not None
