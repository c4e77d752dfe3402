"""REST v1 of the Lever sandbox: envelopes, paging, filters, notes, tags, stages, files, hooks."""
from __future__ import annotations

import time

import requests
from lever_sandbox_helpers import (
    ACME,
    ADA,
    ALAN,
    ASSESSMENT,
    BACKEND,
    CLIENT_ID,
    FORMER,
    FRONTEND,
    HANK,
    OLIVIA,
    Api,
)


def all_pages(api, path, **params):
    """Follow next/offset to the end; returns the items and the number of pages."""
    items, pages, offset = [], 0, None
    while True:
        query = dict(params, **({"offset": offset} if offset else {}))
        body = api.get(path, params=query).json()
        items += body["data"]
        pages += 1
        if not body["hasNext"]:
            assert "next" not in body
            return items, pages
        offset = body["next"]


# --- auth and errors -------------------------------------------------------------------------

def test_missing_or_unknown_token_is_401_with_lever_error_shape(sandbox):
    for headers in ({}, {"Authorization": "Bearer nope"}):
        answer = requests.get(sandbox.url + "/v1/postings", headers=headers)
        assert answer.status_code == 401
        assert set(answer.json()) == {"code", "message"}
        assert answer.json()["code"] == "Unauthorized"


def test_scope_is_checked_and_write_includes_read(sandbox):
    tokens = sandbox.admin.mint_tokens(ACME, CLIENT_ID, "offline_access opportunities:write:admin")
    api = Api(sandbox.url, tokens["access_token"])
    assert api.get(f"/opportunities/{ADA}").status_code == 200  # read through write
    denied = api.post(f"/opportunities/{ADA}/notes", params={"perform_as": OLIVIA},
                      json={"value": "x"})
    assert denied.status_code == 403 and denied.json()["code"] == "Forbidden"


def test_unknown_ids_and_routes_are_404_json(api):
    assert api.get("/opportunities/0000").json()["code"] == "ResourceNotFound"
    missing = api.get("/nothing-here")
    assert missing.status_code == 404 and "message" in missing.json()


# --- reads -----------------------------------------------------------------------------------

def test_postings_have_lever_fields_and_filter_by_state(api):
    body = api.get("/postings").json()
    assert {p["state"] for p in body["data"]} == {"published", "internal", "closed", "draft"}
    backend = next(p for p in body["data"] if p["id"] == BACKEND)
    assert backend["owner"] == OLIVIA and backend["hiringManager"] == HANK
    assert set(backend) >= {"id", "text", "state", "owner", "hiringManager", "user",
                            "categories", "tags", "createdAt", "updatedAt", "urls"}
    published = api.get("/postings", params={"state": "published"}).json()["data"]
    assert {p["id"] for p in published} == {BACKEND, FRONTEND}
    assert api.get(f"/postings/{FRONTEND}").json()["data"]["owner"] == FORMER


def test_stages_are_account_wide_with_builtin_and_uuid_ids(api):
    stages = api.get("/stages").json()
    ids = [s["id"] for s in stages["data"]]
    assert {"lead-new", "applicant-new", "offer", ASSESSMENT} <= set(ids)
    assert stages["hasNext"] is False
    assert api.get(f"/stages/{ASSESSMENT}").json() == {"data": {"id": ASSESSMENT,
                                                                 "text": "Assessment"}}


def test_users_hide_deactivated_unless_asked(api):
    default = {u["id"] for u in api.get("/users").json()["data"]}
    assert OLIVIA in default and FORMER not in default
    everyone = api.get("/users", params={"includeDeactivated": "true"}).json()["data"]
    former = next(u for u in everyone if u["id"] == FORMER)
    assert former["deactivatedAt"] and "password" not in former
    assert api.get(f"/users/{FORMER}").json()["data"]["deactivatedAt"] == former["deactivatedAt"]


def test_opportunity_expands_applications_only_when_asked(api):
    plain = api.get(f"/opportunities/{ADA}").json()["data"]
    assert plain["emails"] == ["ada@example.com"] and plain["stage"] == "applicant-new"
    assert all(isinstance(a, str) for a in plain["applications"])
    expanded = api.get(f"/opportunities/{ADA}", params={"expand": "applications"}).json()["data"]
    application = expanded["applications"][0]
    assert application["id"] == plain["applications"][0]
    assert application["posting"] == BACKEND and application["postingOwner"] == OLIVIA
    assert application["opportunityId"] == ADA and isinstance(application["createdAt"], int)
    assert expanded["stageChanges"][0]["toStageId"] == "applicant-new"


def test_opportunity_filters(sandbox, api):
    def ids(**params):
        return {o["id"] for o in api.get("/opportunities", params=params).json()["data"]}

    in_backend = ids(posting_id=BACKEND)
    assert ADA in in_backend and len(in_backend) == 5
    assert ids(stage_id=ASSESSMENT) == {ALAN, "250d8f03-738a-4bba-a671-8a3d7347714b"}
    assert ids(email="ADA@example.com") == {ADA}
    since = int(time.time() * 1000)
    assert ids(updated_at_start=since) == set()
    sandbox.admin.move(ACME, [ADA], ASSESSMENT)
    assert ids(updated_at_start=since) == {ADA}
    assert ids(posting_id=BACKEND, stage_id=ASSESSMENT) == {ADA, ALAN}


def test_pagination_walks_every_opportunity_once(sandbox, api):
    created = sandbox.admin.add_candidates(ACME, BACKEND, "applicant-new", count=230)
    first = api.get("/opportunities", params={"limit": 100}).json()
    assert len(first["data"]) == 100 and first["hasNext"] is True and first["next"]
    items, pages = all_pages(api, "/opportunities", limit=100)
    assert pages == 3
    ids = [o["id"] for o in items]
    assert len(ids) == len(set(ids)) == 238
    assert set(created) <= set(ids)
    small, small_pages = all_pages(api, "/opportunities", limit=7, posting_id=FRONTEND)
    assert len(small) == 2 and small_pages == 1


def test_pagination_cursor_is_stable_when_items_are_added(sandbox, api):
    first = api.get("/opportunities", params={"limit": 3}).json()
    sandbox.admin.add_candidates(ACME, BACKEND, "applicant-new", count=5)
    second = api.get("/opportunities", params={"limit": 3, "offset": first["next"]}).json()
    assert not {o["id"] for o in first["data"]} & {o["id"] for o in second["data"]}


def test_bad_limit_or_offset_is_400(api):
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"offset": "garbage"}):
        answer = api.get("/opportunities", params=params)
        assert answer.status_code == 400 and answer.json()["code"] == "BadRequest", params


# --- notes -----------------------------------------------------------------------------------

def test_note_needs_perform_as_of_an_active_user(sandbox, api):
    body = {"value": "WeCP: passed\nhttps://hub.example/r/abc", "secret": False}
    missing = api.post(f"/opportunities/{ADA}/notes", json=body)
    assert missing.status_code == 400
    stranger = api.post(f"/opportunities/{ADA}/notes", json=body,
                        params={"perform_as": "b1f2c3d4-0000-4000-8000-000000000101"})
    assert stranger.status_code == 400  # a user of another account
    deactivated = api.post(f"/opportunities/{ADA}/notes", json=body, params={"perform_as": FORMER})
    assert deactivated.status_code == 400 and "deactivated" in deactivated.json()["message"]

    created = api.post(f"/opportunities/{ADA}/notes", json=body, params={"perform_as": HANK})
    assert created.status_code == 200 and created.json()["data"]["noteId"]
    notes = sandbox.admin.notes(ACME)
    assert [(n["opportunity_id"], n["perform_as"], n["value"]) for n in notes] == [
        (ADA, HANK, body["value"])]


def test_deactivated_perform_as_can_be_accepted(sandbox, api):
    sandbox.admin.configure(SANDBOX_DEACTIVATED_PERFORM_AS="accept")
    answer = api.post(f"/opportunities/{ADA}/notes", json={"value": "x"},
                      params={"perform_as": FORMER})
    assert answer.status_code == 200


def test_notes_list_per_opportunity_and_posting_twice_duplicates(api):
    for _ in range(2):
        api.post(f"/opportunities/{ADA}/notes", json={"value": "<b>same</b>", "score": 3},
                 params={"perform_as": OLIVIA})
    api.post(f"/opportunities/{ALAN}/notes", json={"value": "other"}, params={"perform_as": OLIVIA})
    notes = api.get(f"/opportunities/{ADA}/notes").json()
    assert len(notes["data"]) == 2 and notes["hasNext"] is False
    assert notes["data"][0]["fields"][0]["value"] == "<b>same</b>"
    assert notes["data"][0]["user"] == OLIVIA and notes["data"][0]["score"] == 3


def test_note_with_invalid_score_is_400(api):
    answer = api.post(f"/opportunities/{ADA}/notes", json={"value": "x", "score": 9},
                      params={"perform_as": OLIVIA})
    assert answer.status_code == 400


# --- writes ----------------------------------------------------------------------------------

def test_add_and_remove_tags(api):
    added = api.post(f"/opportunities/{ADA}/addTags", json={"tags": ["WeCP: passed", "Backend"]})
    assert added.json()["data"]["tags"] == ["Backend", "WeCP: passed"]
    removed = api.post(f"/opportunities/{ADA}/removeTags", json={"tags": ["Backend"]})
    assert removed.json()["data"]["tags"] == ["WeCP: passed"]
    assert api.post(f"/opportunities/{ADA}/addTags", json={"tags": "x"}).status_code == 400


def test_stage_change_through_the_api(sandbox, api):
    answer = api.put(f"/opportunities/{ADA}/stage", json={"stage": ASSESSMENT},
                     params={"perform_as": HANK})
    data = answer.json()["data"]
    assert data["stage"] == ASSESSMENT
    assert data["stageChanges"][-1]["userId"] == HANK
    assert sandbox.admin.state(ACME)["opportunities"][ADA] == ASSESSMENT
    assert api.put(f"/opportunities/{ADA}/stage", json={"stage": "nope"}).status_code == 400


def test_file_upload(api):
    answer = api.post(f"/opportunities/{ADA}/files",
                      files={"file": ("report.pdf", b"%PDF-1.4 fake", "application/pdf")})
    data = answer.json()["data"]
    assert answer.status_code == 200 and data["name"] == "report.pdf" and data["ext"] == "pdf"
    assert requests.get(data["downloadUrl"]).content == b"%PDF-1.4 fake"
    assert api.post(f"/opportunities/{ADA}/files").status_code == 400


# --- webhooks API ----------------------------------------------------------------------------

def test_webhook_create_list_update_delete(sandbox, api):
    body = {"event": "candidateStageChange", "url": "https://hub.example/webhooks/x",
            "configuration": {"conditions": {"origins": ["applied", "referred"]}}}
    created = api.post("/webhooks", json=body)
    assert created.status_code == 201
    hook = created.json()["data"]
    assert len(hook["configuration"]["signatureToken"]) >= 32
    assert hook["configuration"]["conditions"] == body["configuration"]["conditions"]

    listed = api.get("/webhooks").json()["data"]
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "signatureToken" not in listed[0]["configuration"]
    assert sandbox.admin.webhooks(ACME)[0]["configuration"]["signatureToken"] == \
        hook["configuration"]["signatureToken"]

    updated = api.put(f"/webhooks/{hook['id']}", json={"url": "https://hub.example/other"})
    assert updated.json()["data"]["url"] == "https://hub.example/other"

    deleted = api.delete(f"/webhooks/{hook['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.get("/webhooks").json()["data"] == []
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 404


def test_webhook_create_validates(api):
    assert api.post("/webhooks", json={"event": "nope", "url": "https://x"}).status_code == 400
    assert api.post("/webhooks", json={"event": "candidateStageChange"}).status_code == 400
    bad_conditions = {"event": "candidateStageChange", "url": "https://x",
                      "configuration": {"conditions": {"origins": "applied"}}}
    assert api.post("/webhooks", json=bad_conditions).status_code == 400


def test_accounts_are_isolated(sandbox):
    globex = Api(sandbox.url, sandbox.admin.mint_tokens("globex", CLIENT_ID)["access_token"])
    assert globex.get(f"/opportunities/{ADA}").status_code == 404
    assert len(globex.get("/opportunities").json()["data"]) == 2
