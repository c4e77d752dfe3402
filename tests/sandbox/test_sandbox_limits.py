"""Rate limiting, injected faults and the request log of the Lever sandbox."""
from __future__ import annotations

import time

from lever_sandbox_helpers import ACME, ADA, CLIENT_ID, HANK, Api, token_request


def burst(api, n, path="/stages"):
    return [api.get(path) for _ in range(n)]


def test_burst_is_allowed_then_429_with_retry_after(sandbox, api):
    sandbox.admin.configure(SANDBOX_RATE_LIMIT=0.5, SANDBOX_RATE_BURST=5)
    answers = burst(api, 7)
    assert [a.status_code for a in answers[:5]] == [200] * 5
    limited = answers[5]
    assert limited.status_code == 429
    assert limited.json() == {"code": "TooManyRequests", "message": "Rate limit exceeded"}
    assert int(limited.headers["Retry-After"]) >= 1


def test_retry_after_can_be_left_out(sandbox, api):
    sandbox.admin.configure(SANDBOX_RATE_LIMIT=0.5, SANDBOX_RATE_BURST=1, SANDBOX_RETRY_AFTER=False)
    limited = burst(api, 2)[1]
    assert limited.status_code == 429 and "Retry-After" not in limited.headers


def test_default_limit_is_20_burst_then_refills_at_10_per_second(sandbox, api):
    answers = burst(api, 40)
    statuses = [a.status_code for a in answers]
    # 20 of burst plus whatever refilled while the calls ran; some must be refused.
    assert statuses[:20] == [200] * 20 and 429 in statuses
    time.sleep(0.35)  # ~3 tokens back at 10/s
    assert api.get("/stages").status_code == 200


def test_each_access_token_has_its_own_bucket(sandbox, api):
    sandbox.admin.configure(SANDBOX_RATE_LIMIT=0.5, SANDBOX_RATE_BURST=2)
    assert [a.status_code for a in burst(api, 3)] == [200, 200, 429]
    other = Api(sandbox.url, sandbox.admin.mint_tokens(ACME, CLIENT_ID)["access_token"])
    assert other.get("/stages").status_code == 200


def test_error_rate_fault_on_a_route(sandbox, api):
    sandbox.admin.add_fault(route=r"^/v1/opportunities/[^/]+/notes$", error_rate=1.0, status=502)
    failed = api.post(f"/opportunities/{ADA}/notes", json={"value": "x"},
                      params={"perform_as": HANK})
    assert failed.status_code == 502
    assert api.get(f"/opportunities/{ADA}").status_code == 200
    assert sandbox.admin.notes(ACME) == []  # the request never reached the handler
    sandbox.admin.clear_faults()
    assert api.get(f"/opportunities/{ADA}/notes").status_code == 200


def test_storm_lasts_the_given_seconds(sandbox, api):
    sandbox.admin.add_fault(route="^/v1/", storm_seconds=0.4, status=503)
    assert api.get("/stages").status_code == 503
    assert api.get("/postings").status_code == 503
    time.sleep(0.45)
    assert api.get("/stages").status_code == 200


def test_latency_fault(sandbox, api):
    sandbox.admin.add_fault(route="^/v1/stages", latency_ms=300)
    started = time.monotonic()
    assert api.get("/stages").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_faults_can_hit_the_token_endpoint_but_never_the_admin_api(sandbox):
    sandbox.admin.add_fault(route="", error_rate=1.0, status=500)
    assert token_request(sandbox, grant_type="refresh_token", refresh_token="x").status_code == 500
    assert sandbox.admin.state(ACME)["id"] == ACME


def test_request_log_records_who_called_what(sandbox, api, tokens):
    start = sandbox.admin.requests_log()[-1]["seq"] if sandbox.admin.requests_log() else 0
    api.post(f"/opportunities/{ADA}/notes", json={"value": "x"}, params={"perform_as": HANK})
    api.get("/stages")
    token_request(sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    log = sandbox.admin.requests_log(since=start)
    note, stages, refresh = log[-3:]
    assert (note["method"], note["path"], note["status"]) == (
        "POST", f"/v1/opportunities/{ADA}/notes", 200)
    assert note["perform_as"] == HANK and note["query"] == {"perform_as": HANK}
    assert note["account_id"] == ACME and note["client_id"] == CLIENT_ID
    assert note["token_id"] and note["token_id"] != tokens["access_token"]
    assert stages["token_id"] == note["token_id"] and stages["perform_as"] is None
    assert refresh["path"] == "/oauth/token" and refresh["status"] == 200
    assert refresh["account_id"] == ACME
    assert [e["seq"] for e in sandbox.admin.requests_log(since=note["seq"])][:1] == [stages["seq"]]


def test_request_log_records_refusals(sandbox, api):
    sandbox.admin.configure(SANDBOX_RATE_LIMIT=0.5, SANDBOX_RATE_BURST=1)
    burst(api, 2)
    statuses = [e["status"] for e in sandbox.admin.requests_log()]
    assert statuses[-2:] == [200, 429]


def test_an_injected_429_says_retry_after_unless_configured_off(sandbox, api):
    sandbox.admin.add_fault(route="^/v1/stages", error_rate=1.0, status=429, retry_after=3)
    limited = api.get("/stages")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    sandbox.admin.configure(SANDBOX_RETRY_AFTER=False)
    limited = api.get("/stages")
    assert limited.status_code == 429 and "Retry-After" not in limited.headers
    # Other injected statuses never carry it.
    sandbox.admin.clear_faults()
    sandbox.admin.configure(SANDBOX_RETRY_AFTER=True)
    sandbox.admin.add_fault(route="^/v1/stages", error_rate=1.0, status=503)
    assert "Retry-After" not in api.get("/stages").headers
