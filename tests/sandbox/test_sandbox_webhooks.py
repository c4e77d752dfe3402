"""Webhook delivery of the Lever sandbox: signature, matching, toggle, retries, drops, async."""
from __future__ import annotations

import hashlib
import hmac
import threading
import time

import requests
from lever_sandbox_helpers import ACME, ADA, ALAN, ASSESSMENT, BACKEND, CLIENT_ID, OLIVIA, Api


def lever_signature_is_valid(body: dict, signature_token: str) -> bool:
    """Independent verifier, written from lever-api.md, not from the sandbox's code:
    signature = hex(HMAC-SHA256(key=signatureToken, msg=token + str(triggeredAt)))."""
    message = body["token"] + str(body["triggeredAt"])
    expected = hmac.new(signature_token.encode(), message.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, body["signature"])


def create_hook(api, url, origins=None) -> dict:
    body = {"event": "candidateStageChange", "url": url}
    if origins is not None:
        body["configuration"] = {"conditions": {"origins": origins}}
    answer = api.post("/webhooks", json=body)
    assert answer.status_code == 201
    return answer.json()["data"]


def test_stage_change_is_delivered_signed_as_lever_signs(sandbox, api, receiver):
    hook = create_hook(api, receiver.url)
    sandbox.admin.move(ACME, [ADA], ASSESSMENT)
    body = receiver.wait_for(1)[0]["body"]
    assert set(body) == {"triggeredAt", "event", "signature", "token", "data"}
    assert body["event"] == "candidateStageChange"
    assert body["data"] == {"opportunityId": ADA, "candidateId": ADA,
                            "contactId": body["data"]["contactId"],
                            "fromStageId": "applicant-new", "toStageId": ASSESSMENT}
    assert abs(body["triggeredAt"] - time.time() * 1000) < 10_000  # epoch milliseconds
    assert lever_signature_is_valid(body, hook["configuration"]["signatureToken"])
    assert not lever_signature_is_valid(body, "0" * 32)
    tampered = dict(body, triggeredAt=body["triggeredAt"] + 1)
    assert not lever_signature_is_valid(tampered, hook["configuration"]["signatureToken"])


def test_every_delivery_gets_a_fresh_token(sandbox, api, receiver):
    hook = create_hook(api, receiver.url)
    sandbox.admin.move(ACME, [ADA, ALAN], "offer")
    bodies = [c["body"] for c in receiver.wait_for(2)]
    assert len({b["token"] for b in bodies}) == 2
    assert {b["data"]["opportunityId"] for b in bodies} == {ADA, ALAN}
    assert all(lever_signature_is_valid(b, hook["configuration"]["signatureToken"]) for b in bodies)


def test_api_stage_change_fires_a_webhook_too(sandbox, api, receiver):
    create_hook(api, receiver.url)
    api.put(f"/opportunities/{ADA}/stage", json={"stage": ASSESSMENT})
    assert receiver.wait_for(1)[0]["body"]["data"]["toStageId"] == ASSESSMENT


def test_ui_move_fires_a_webhook(sandbox, api, receiver):
    create_hook(api, receiver.url)
    page = requests.post(sandbox.url + f"/accounts/{ACME}/move",
                         data={"opportunity_ids": [ADA, ALAN], "stage_id": "offer",
                               "next": f"/accounts/{ACME}/postings/{BACKEND}"})
    assert page.status_code == 200 and "Moved 2 candidate(s) to Offer" in page.text
    assert len(receiver.wait_for(2)) == 2


def test_moving_to_the_same_stage_sends_nothing(sandbox, api, receiver):
    create_hook(api, receiver.url)
    assert sandbox.admin.move(ACME, [ADA], "applicant-new") == 0
    time.sleep(0.3)
    assert receiver.calls == []


def test_origin_conditions_filter_deliveries(sandbox, api, receiver):
    create_hook(api, receiver.url, origins=["referred"])  # Alan is referred, Ada applied
    sandbox.admin.move(ACME, [ADA, ALAN], "offer")
    calls = receiver.wait_for(1)
    time.sleep(0.3)
    assert [c["body"]["data"]["opportunityId"] for c in receiver.calls] == [ALAN]
    assert len(calls) == 1


def test_every_matching_webhook_of_the_account_is_called(sandbox, api, receiver):
    create_hook(api, receiver.url + "/one")
    create_hook(api, receiver.url + "/two")
    api.post("/webhooks", json={"event": "candidateHired", "url": receiver.url + "/hired"})
    globex = Api(sandbox.url, sandbox.admin.mint_tokens("globex", CLIENT_ID)["access_token"])
    create_hook(globex, receiver.url + "/globex")
    sandbox.admin.move(ACME, [ADA], ASSESSMENT)
    receiver.wait_for(2)
    time.sleep(0.3)
    assert sorted(c["path"] for c in receiver.calls) == ["/hook/one", "/hook/two"]


def test_toggle_off_sends_nothing(sandbox, api, receiver):
    create_hook(api, receiver.url)
    sandbox.admin.set_toggle(ACME, False)
    sandbox.admin.move(ACME, [ADA], ASSESSMENT)
    time.sleep(0.3)
    assert receiver.calls == [] and sandbox.admin.deliveries() == []
    sandbox.admin.set_toggle(ACME, True)
    sandbox.admin.move(ACME, [ADA], "offer")
    assert len(receiver.wait_for(1)) == 1


def test_toggle_in_the_ui(sandbox):
    page = requests.post(sandbox.url + f"/accounts/{ACME}/webhook-toggle",
                         data={"candidateStageChange": "off"})
    assert "Candidate Stage Change: <strong>OFF</strong>" in page.text
    assert sandbox.admin.state(ACME)["webhook_toggles"]["candidateStageChange"] is False


def test_failed_deliveries_are_retried_until_2xx(sandbox, api, receiver):
    create_hook(api, receiver.url)
    receiver.statuses = [500, 503]
    sandbox.admin.move(ACME, [ADA], ASSESSMENT)
    delivery = sandbox.admin.wait_for_deliveries(1)[0]
    assert [a["status"] for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["delivered"] is True
    tokens = {c["body"]["token"] for c in receiver.calls}
    assert len(receiver.calls) == 3 and len(tokens) == 1  # a retry resends the same delivery
    gaps = [b["at"] - a["at"] for a, b in zip(delivery["attempts"], delivery["attempts"][1:])]
    assert gaps[0] >= 40 and gaps[1] >= gaps[0]  # 0.05 s then 0.1 s in the test config


def test_five_attempts_in_all_then_give_up(sandbox, api, receiver):
    create_hook(api, receiver.url)
    receiver.statuses = [500] * 10
    sandbox.admin.move(ACME, [ADA], ASSESSMENT)
    delivery = sandbox.admin.wait_for_deliveries(1)[0]
    assert len(delivery["attempts"]) == 5 and delivery["delivered"] is False
    assert len(receiver.calls) == 5


def test_connection_errors_are_retried(sandbox, api):
    create_hook(api, "http://127.0.0.1:9/unreachable")
    sandbox.admin.configure(SANDBOX_WEBHOOK_RETRY_DELAYS=[0.01, 0.01])
    sandbox.admin.move(ACME, [ADA], ASSESSMENT)
    delivery = sandbox.admin.wait_for_deliveries(1)[0]
    assert len(delivery["attempts"]) == 3
    assert all(a["status"] is None and a["error"] for a in delivery["attempts"])


def test_dropped_deliveries_fault(sandbox, api, receiver):
    create_hook(api, receiver.url)
    sandbox.admin.add_fault(route=r"127\.0\.0\.1", drop_webhooks=True)
    sandbox.admin.move(ACME, [ADA], ASSESSMENT)
    delivery = sandbox.admin.wait_for_deliveries(1)[0]
    assert delivery["dropped"] is True and delivery["attempts"] == []
    time.sleep(0.2)
    assert receiver.calls == []


def test_move_returns_before_a_slow_receiver_answers(sandbox, api, receiver):
    create_hook(api, receiver.url)
    receiver.delay = 1.0
    started = time.monotonic()
    assert sandbox.admin.move(ACME, [ADA], ASSESSMENT) == 1
    assert time.monotonic() - started < 0.5
    receiver.wait_for(1, timeout=5)


def test_delivery_log_page_and_admin_log(sandbox, api, receiver):
    hook = create_hook(api, receiver.url)
    receiver.statuses = [502]
    sandbox.admin.move(ACME, [ADA], ASSESSMENT, user_id=OLIVIA)
    delivery = sandbox.admin.wait_for_deliveries(1)[0]
    assert delivery["webhook_id"] == hook["id"] and delivery["url"] == receiver.url
    assert delivery["event"] == "candidateStageChange"
    assert delivery["payload"]["data"]["opportunityId"] == ADA
    page = requests.get(sandbox.url + f"/accounts/{ACME}/webhooks").text
    assert receiver.url in page and "502" in page and "delivered" in page


def test_bulk_move_delivers_everything_with_a_bounded_number_of_threads(sandbox, api, receiver):
    create_hook(api, receiver.url)
    ids = sandbox.admin.add_candidates(ACME, BACKEND, "applicant-new", count=300)
    receiver.delay = 0.01
    before = threading.active_count()
    assert sandbox.admin.move(ACME, ids, ASSESSMENT) == 300
    peak = before
    deadline = time.monotonic() + 20
    while len(receiver.calls) < 300 and time.monotonic() < deadline:
        peak = max(peak, threading.active_count())
        time.sleep(0.01)
    assert len(receiver.calls) == 300
    assert {c["body"]["data"]["opportunityId"] for c in receiver.calls} == set(ids)
    assert peak - before < 60  # senders are pooled, not one thread per delivery
