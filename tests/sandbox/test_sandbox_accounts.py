"""Generated accounts of the Lever sandbox: each one a separate Lever with its own data and limits."""
from __future__ import annotations

import requests
from lever_sandbox_helpers import ACME, ALL_SCOPES, CLIENT_ID, REDIRECT_URI, Api

from sandboxes.lever import create_app


def _api(sandbox, account_id):
    return Api(sandbox.url, sandbox.admin.mint_tokens(account_id, CLIENT_ID)["access_token"])


def test_generated_accounts_are_shaped_like_acme(sandbox):
    ids = sandbox.admin.add_accounts(3, prefix="org", candidates=4, seed=1)
    assert ids == ["org-01", "org-02", "org-03"]
    states = [sandbox.admin.state(a) for a in ids]
    for state in states:
        assert len(state["active_users"]) == 3
        assert sorted(state["postings"].values()) == ["closed", "published", "published"]
        assert state["stages"][:4] == ["lead-new", "lead-reached-out", "lead-responded", "applicant-new"]
        assert state["stages"][-1] == "offer" and len(state["stages"]) == 9
        assert state["webhook_toggles"] == {"candidateStageChange": True, "candidateArchiveChange": True}
        assert sorted(set(state["opportunities"].values())) == ["applicant-new"]
        assert len(state["opportunities"]) == 4
    # Nothing is shared but Lever's built-in stage ids.
    for field in ("users", "postings", "opportunities"):
        seen = [set(s[field]) for s in states]
        assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]), field
    assert not set(states[0]["stages"][4:-1]) & set(states[1]["stages"][4:-1])
    # The shipped accounts are still there, and numbering goes on after the existing ones.
    assert sandbox.admin.state(ACME)["id"] == ACME
    assert sandbox.admin.add_accounts(1, prefix="org") == ["org-04"]


def test_the_same_seed_gives_the_same_accounts():
    first = create_app({"SANDBOX_SEED": {"generatedAccounts": {"count": 2, "seed": 9}}})
    second = create_app({"SANDBOX_SEED": {"generatedAccounts": {"count": 2, "seed": 9}}})
    other = create_app({"SANDBOX_SEED": {"generatedAccounts": {"count": 2, "seed": 10}}})

    def ids(app):
        account = app.extensions["lever_sandbox"].accounts["org-02"]
        return sorted(account.users) + sorted(account.postings) + [s.id for s in account.stages]
    assert ids(first) == ids(second) != ids(other)


def test_seed_option_survives_a_reset(sandbox):
    seed = {"accounts": [], "generatedAccounts": {"count": 2, "prefix": "bench", "candidates": 1}}
    assert sandbox.admin.reset(seed)["data"]["accounts"] == ["bench-01", "bench-02"]
    assert len(sandbox.admin.state("bench-02")["opportunities"]) == 1


def test_each_account_is_its_own_lever(sandbox):
    sandbox.admin.add_accounts(2, prefix="org", candidates=2)
    one, two = _api(sandbox, "org-01"), _api(sandbox, "org-02")
    postings_one = {p["id"] for p in one.get("/postings").json()["data"]}
    assert postings_one == set(sandbox.admin.state("org-01")["postings"])
    opp_two = next(iter(sandbox.admin.state("org-02")["opportunities"]))
    assert one.get(f"/opportunities/{opp_two}").status_code == 404
    assert two.get(f"/opportunities/{opp_two}").status_code == 200


def test_moves_fire_only_the_moved_accounts_webhooks(sandbox, receiver):
    sandbox.admin.add_accounts(2, prefix="org", candidates=1)
    for account in ("org-01", "org-02"):
        answer = _api(sandbox, account).post("/webhooks", json={
            "event": "candidateStageChange", "url": f"{receiver.url}/{account}"})
        assert answer.status_code == 201
    opp = next(iter(sandbox.admin.state("org-02")["opportunities"]))
    assert sandbox.admin.move("org-02", [opp], "offer") == 1
    (call,) = receiver.wait_for(1)
    assert call["path"] == "/hook/org-02" and call["body"]["data"]["opportunityId"] == opp


def test_rate_limits_are_per_account(sandbox):
    sandbox.admin.add_accounts(2, prefix="org")
    sandbox.admin.configure(SANDBOX_RATE_LIMIT=0.5, SANDBOX_RATE_BURST=2)
    one, two = _api(sandbox, "org-01"), _api(sandbox, "org-02")
    assert [one.get("/stages").status_code for _ in range(3)] == [200, 200, 429]
    assert two.get("/stages").status_code == 200
    log = sandbox.admin.requests_log()
    assert {r["account_id"] for r in log if r["path"] == "/v1/stages"} == {"org-01", "org-02"}


def test_the_generated_super_admin_can_connect_an_app(sandbox):
    sandbox.admin.add_accounts(1, prefix="org")
    answer = sandbox.authorize(CLIENT_ID, REDIRECT_URI, ALL_SCOPES, email="owner@org-01.example")
    assert "code" in answer, answer
    assert CLIENT_ID in sandbox.admin.state("org-01")["authorized_apps"]
    assert CLIENT_ID not in sandbox.admin.state(ACME)["authorized_apps"]


def test_accounts_from_seed_entries_and_bad_requests(sandbox):
    url = sandbox.url + "/_sandbox/accounts"
    spec = {"id": "tiny", "name": "Tiny", "stages": [{"id": "applicant-new", "text": "New"}]}
    assert requests.post(url, json={"accounts": [spec]}, timeout=10).json() == \
        {"data": {"accounts": ["tiny"]}}
    assert sandbox.admin.state("tiny")["stages"] == ["applicant-new"]
    for body in ({"accounts": [spec]},                     # exists already
                 {"accounts": [{"id": "x", "users": [{}]}]},  # a user without fields
                 {"count": "many"}, {"count": -1}, {"count": 1, "prefix": "a/b"}, {}):
        assert requests.post(url, json=body, timeout=10).status_code == 400, body
    # A bad entry leaves no half-made account behind.
    assert requests.get(sandbox.url + "/_sandbox/accounts/x/state", timeout=10).status_code == 404
