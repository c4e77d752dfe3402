"""Lever webhook deliveries: signature, freshness, dedupe on token, verify-connection pings, fixtures."""
from __future__ import annotations

import hashlib
import hmac
import json
import pathlib
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.extensions import db
from hub.inbox import WebhookDelivery, process_delivery
from hub.plugin import BadSignature, MalformedPayload, Ping
from plugins.wecp_lever.webhooks import check_fresh, expected_signature, parse_delivery
from tests.plugins.wecp_lever.signing import lever_body, sign_lever_delivery
from tests.workers import make_connection

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "lever"
SECRET = "3b9f0c1d2e4a5b6c7d8e9f0a1b2c3d4e"


def fixture(event: str) -> dict:
    return json.loads((FIXTURES / f"{event}.json").read_text())


@pytest.fixture
def conn(app):
    return make_connection(plugin_key="wecp_lever", provider="lever", webhook_secret=SECRET)


@pytest.fixture
def post(client, conn):
    def post(body: bytes):
        return client.post(f"/webhooks/wecp_lever/{conn.endpoint_id}", data=body,
                           headers={"Content-Type": "application/json"})
    return post


def stored() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(WebhookDelivery)))


def test_candidate_stage_change_fixture_is_stored_and_handled(post):
    payload = fixture("candidateStageChange")
    response = post(lever_body(SECRET, payload))
    assert response.status_code == 200
    [row] = stored()
    assert (row.event, row.dedupe_key, row.source) == ("candidateStageChange", payload["token"], "lever")
    assert row.payload["data"] == payload["data"]
    process_delivery(row.id)
    db.session.expire_all()
    # No test is linked to the stage: recorded, and Lever is not even asked (see test_flow.py).
    assert row.status == "skipped" and "no test is linked" in row.summary


def test_candidate_hired_fixture_is_stored_and_skipped_as_unsupported(post):
    response = post(lever_body(SECRET, fixture("candidateHired")))
    assert response.status_code == 200
    [row] = stored()
    assert process_delivery(row.id) == {"outcome": "skipped", "status": "skipped", "reason": "unsupported_event"}
    db.session.expire_all()
    assert (row.status, row.outcome, row.summary) == ("skipped", "skipped", "unsupported event candidateHired")


def test_stage_change_with_invalid_data_is_skipped_with_the_reason(post):
    payload = fixture("candidateStageChange")
    del payload["data"]["toStageId"]
    post(lever_body(SECRET, payload))
    [row] = stored()
    assert process_delivery(row.id)["reason"] == "invalid_data"
    db.session.expire_all()
    assert row.summary.startswith("refused: toStageId") and "nothing was called" in row.summary


def test_bad_signature_is_401_and_stores_nothing(post):
    assert post(lever_body("not-the-secret", fixture("candidateStageChange"))).status_code == 401
    tampered = sign_lever_delivery(SECRET, fixture("candidateStageChange"))
    tampered["token"] = "another-token"
    assert post(json.dumps(tampered).encode()).status_code == 401
    assert stored() == []


def test_connection_without_webhook_secret_refuses_signed_deliveries(client, app):
    conn = make_connection(plugin_key="wecp_lever", provider="lever", org_name="NoSecret")
    response = client.post(f"/webhooks/wecp_lever/{conn.endpoint_id}",
                           data=lever_body(SECRET, fixture("candidateStageChange")))
    assert response.status_code == 401
    assert stored() == []


def test_stale_or_future_timestamp_is_401(post):
    now_ms = int(time.time() * 1000)
    old = lever_body(SECRET, fixture("candidateStageChange"), triggered_at=now_ms - 601_000)
    future = lever_body(SECRET, fixture("candidateStageChange"), triggered_at=now_ms + 301_000)
    assert post(old).status_code == 401
    assert post(future).status_code == 401
    assert stored() == []


def test_max_age_comes_from_config(post, app):
    app.config["LEVER_WEBHOOK_MAX_AGE_SECONDS"] = 3600
    body = lever_body(SECRET, fixture("candidateStageChange"), triggered_at=int(time.time() * 1000) - 1_800_000)
    assert post(body).status_code == 200


def test_duplicate_delivery_is_stored_once(post):
    signed = sign_lever_delivery(SECRET, fixture("candidateStageChange"))
    assert post(json.dumps(signed).encode()).status_code == 200
    # Lever's retry: same token, same triggeredAt.
    response = post(json.dumps(signed).encode())
    assert response.status_code == 200 and response.json == {"status": "duplicate"}
    assert len(stored()) == 1


def test_unknown_event_is_answered_like_a_ping_and_not_stored(post):
    payload = dict(fixture("candidateStageChange"), event="somethingNew")
    response = post(lever_body(SECRET, payload))
    assert response.status_code == 200 and response.json == {"status": "ok"}
    assert stored() == []


@pytest.mark.parametrize("body", [b"{}", b'{"event": "test"}', b'{"url": "https://hub/webhooks/x"}', b""])
def test_verify_connection_ping_is_200_and_not_stored(post, body):
    response = post(body)
    assert response.status_code == 200, response.json
    assert stored() == []


def test_oversize_body_is_413(post, app):
    app.config["HUB_WEBHOOK_MAX_BYTES"] = 512
    payload = fixture("candidateStageChange")
    payload["data"]["padding"] = "x" * 1000
    assert post(lever_body(SECRET, payload)).status_code == 413
    assert stored() == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b'"just a string"'])
def test_malformed_json_is_400(post, body):
    assert post(body).status_code == 400
    assert stored() == []


def test_signed_delivery_with_non_object_data_is_400(post):
    assert post(lever_body(SECRET, dict(fixture("candidateStageChange"), data=[1]))).status_code == 400


def test_pure_functions():
    # Lever's documented algorithm, computed independently of the plugin and the helper.
    assert expected_signature("key", "tok", 1764331200000) == \
        hmac.new(b"key", b"tok1764331200000", hashlib.sha256).hexdigest()
    check_fresh(1_000_000, 600, now=1_000 + 599)
    with pytest.raises(BadSignature):
        check_fresh(1_000_000, 600, now=1_000 + 601)
    with pytest.raises(BadSignature):
        check_fresh(10 ** 400, 600)
    with pytest.raises(Ping):
        parse_delivery(b'{"token": "x"}', SECRET, 600)
    with pytest.raises(MalformedPayload):
        parse_delivery(json.dumps({"event": "candidateStageChange", "token": "t", "signature": "s",
                                   "triggeredAt": "yesterday"}).encode(), SECRET, 600)
    event = parse_delivery(lever_body(SECRET, fixture("candidateStageChange")), SECRET, 600)
    assert event.event == "candidateStageChange" and event.dedupe_key == fixture("candidateStageChange")["token"]


ENVELOPE_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                            st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(envelope=st.fixed_dictionaries({}, optional={k: ENVELOPE_VALUES for k in
                                                    ("triggeredAt", "event", "signature", "token", "data")}),
       event=st.sampled_from(["candidateStageChange", "candidateHired", "nope"]),
       sign=st.booleans())
def test_no_lever_body_ever_causes_a_500(post, envelope, event, sign):
    payload = dict(envelope, event=event)
    if sign:
        body = json.dumps(sign_lever_delivery(SECRET, payload)).encode()
    else:
        body = json.dumps(payload).encode()
    assert post(body).status_code in (200, 400, 401, 413)
