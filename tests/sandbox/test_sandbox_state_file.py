"""The demo's sandbox keeps its state in a file: a restart finds the Lever it left.

Before: every demo restart started the sandbox from its seed, so the hub's tokens were unknown
to it and the Lever card showed "Revoked" after each restart.
"""
from __future__ import annotations

import json

import pytest
from lever_sandbox_helpers import (
    ACME,
    ALL_SCOPES,
    ASSESSMENT,
    BACKEND,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
)

from sandboxes.lever import persist
from sandboxes.lever.app import create_app

STAGE_CHANGE = "candidateStageChange"


def _app(state_file, **config):
    return create_app({"SANDBOX_STATE_FILE": str(state_file), "SANDBOX_STAGE_CHANGE_OFF": True,
                       "SANDBOX_CLIENTS": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                            "redirect_uris": [REDIRECT_URI]}], **config})


def _toggles(client):
    return client.get(f"/_sandbox/accounts/{ACME}/state").get_json()["data"]["webhook_toggles"]


def test_a_restart_keeps_the_grant_the_webhook_the_toggle_and_the_candidates(tmp_path):
    state_file = tmp_path / "lever-sandbox.json"
    first = _app(state_file).test_client()
    # Started as a new Lever account: Candidate Stage Change off until someone switches it on.
    assert _toggles(first)[STAGE_CHANGE] is False
    tokens = first.post(f"/_sandbox/accounts/{ACME}/tokens",
                        json={"client_id": CLIENT_ID, "scope": ALL_SCOPES}).get_json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    hook = first.post("/v1/webhooks", headers=bearer, json={
        "url": "http://127.0.0.1:5000/webhooks/wecp_lever/lever", "event": STAGE_CHANGE})
    assert hook.status_code in (200, 201), hook.get_data(as_text=True)
    first.post(f"/accounts/{ACME}/webhook-toggle", data={STAGE_CHANGE: "on"})
    applied = first.post(f"/_sandbox/accounts/{ACME}/candidates", json={
        "posting_id": BACKEND, "stage_id": ASSESSMENT,
        "candidates": [{"name": "Grace Hopper", "emails": ["grace@example.com"]}]})
    opportunity = applied.get_json()["data"][0]
    assert state_file.exists()

    again = _app(state_file).test_client()
    # The switch someone turned on stays on (the file wins over "starts off").
    assert _toggles(again)[STAGE_CHANGE] is True
    assert again.get("/v1/users", headers=bearer).status_code == 200
    hooks = again.get("/v1/webhooks", headers=bearer).get_json()["data"]
    assert [h["id"] for h in hooks] == [hook.get_json()["data"]["id"]]
    assert again.get(f"/v1/opportunities/{opportunity}", headers=bearer).status_code == 200
    # The refresh token the hub holds still works (and rotates, as Lever's do).
    refreshed = again.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    assert refreshed.get_json()["refresh_token"] != tokens["refresh_token"]


def test_without_a_state_file_a_restart_starts_from_the_seed(tmp_path):
    app = create_app({"SANDBOX_STAGE_CHANGE_OFF": False})
    client = app.test_client()
    assert _toggles(client)[STAGE_CHANGE] is True
    client.post(f"/accounts/{ACME}/webhook-toggle", data={STAGE_CHANGE: "off"})
    assert not list(tmp_path.iterdir())
    assert _toggles(create_app().test_client())[STAGE_CHANGE] is True


def test_the_file_names_only_the_sandbox_s_own_records(tmp_path):
    state_file = tmp_path / "lever-sandbox.json"
    _app(state_file).test_client().post(f"/accounts/{ACME}/webhook-toggle", data={STAGE_CHANGE: "on"})
    data = json.loads(state_file.read_text())
    data["accounts"]["__dict__"][0][1]["__type__"] = "Popen"
    state_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown record type 'Popen'"):
        _app(state_file)
    assert persist.TYPES["Account"].__module__ == "sandboxes.lever.state"
