"""Admin API, seed data, candidate generator, human UI and CLI of the Lever sandbox."""
from __future__ import annotations

import re
import time

import requests
from click.testing import CliRunner
from lever_sandbox_helpers import ACME, ADA, ASSESSMENT, BACKEND, FORMER, OLIVIA

from sandboxes.lever import create_app
from sandboxes.lever.cli import build_config, lever_sandbox_command
from sandboxes.lever.state import generate_candidates


def test_seed_has_what_the_demo_needs(sandbox):
    state = sandbox.admin.state(ACME)
    assert set(state["postings"].values()) == {"published", "internal", "closed", "draft"}
    assert {"lead-new", "applicant-new", "offer", ASSESSMENT} <= set(state["stages"])
    assert FORMER in state["users"] and FORMER not in state["active_users"]
    assert state["webhook_toggles"] == {"candidateStageChange": True, "candidateArchiveChange": True}
    assert sandbox.admin.state("globex")["webhook_toggles"] == {"candidateStageChange": False}


def test_reset_to_empty_and_back(sandbox):
    assert sandbox.admin.reset(None)["data"]["accounts"] == []
    assert requests.get(sandbox.url + f"/_sandbox/accounts/{ACME}/state").status_code == 404
    assert sandbox.admin.reset("default")["data"]["accounts"] == [ACME, "globex"]


def test_add_named_candidates_without_webhooks(sandbox, receiver):
    ids = sandbox.admin.add_candidates(ACME, BACKEND, ASSESSMENT, candidates=[
        {"name": "Eve Example", "emails": ["eve@example.com"], "origin": "sourced"}])
    assert len(ids) == 1 and sandbox.admin.state(ACME)["opportunities"][ids[0]] == ASSESSMENT
    assert sandbox.admin.deliveries() == []


def test_a_new_candidate_applies_from_the_pipeline_page(sandbox, receiver):
    """The demo's step 3: someone applies now (after any link), in "New applicant", no webhook."""
    def new_applicants():
        return sum(1 for stage in sandbox.admin.state(ACME)["opportunities"].values() if stage == "applicant-new")

    before = new_applicants()
    pipeline = requests.get(sandbox.url + f"/accounts/{ACME}/postings/{BACKEND}").text
    assert "New candidate applies" in pipeline
    page = requests.post(sandbox.url + f"/accounts/{ACME}/postings/{BACKEND}/apply",
                         data={"name": "Grace  Hopper", "email": "grace@example.com"})
    assert page.status_code == 200 and "Grace Hopper applied." in page.text and "Grace Hopper</a>" in page.text
    assert new_applicants() == before + 1
    assert sandbox.admin.deliveries() == []
    refused = requests.post(sandbox.url + f"/accounts/{ACME}/postings/{BACKEND}/apply", data={"name": "x", "email": ""})
    assert "needs a name and an email" in refused.text and new_applicants() == before + 1


def test_generated_candidates_have_created_at_now(sandbox):
    before = int(time.time() * 1000)
    ids = sandbox.admin.add_candidates(ACME, BACKEND, "applicant-new", count=3)
    tokens = sandbox.admin.mint_tokens(ACME, "test-app")
    opp = requests.get(sandbox.url + f"/v1/opportunities/{ids[0]}?expand=applications",
                       headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert opp["data"]["applications"][0]["createdAt"] >= before
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        ids[0])


def test_generator_function_for_benchmarks():
    app = create_app({"SANDBOX_SEED": "default"})
    state = app.extensions["lever_sandbox"]
    ids = generate_candidates(state, ACME, 1000, seed=7)
    assert len(set(ids)) == 1000
    assert all(state.accounts[ACME].opportunities[i].application.posting_id == BACKEND
               for i in ids)


def test_patch_opportunity_for_negative_cases(sandbox):
    archived = {"archivedAt": 1764000000000, "reason": "hired"}
    sandbox.admin.patch_opportunity(ADA, archived=archived, emails=[])
    tokens = sandbox.admin.mint_tokens(ACME, "test-app")
    opp = requests.get(sandbox.url + f"/v1/opportunities/{ADA}",
                       headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert opp["data"]["archived"] == archived and opp["data"]["emails"] == []


def test_admin_rejects_unknown_config_and_bad_input(sandbox):
    answer = requests.patch(sandbox.url + "/_sandbox/config", json={"SECRET_KEY": "x"})
    assert answer.status_code == 400
    answer = requests.post(sandbox.url + f"/_sandbox/accounts/{ACME}/move", json={"stage_id": "x"})
    assert answer.status_code == 400
    answer = requests.post(sandbox.url + "/_sandbox/faults", json={"route": "("})
    assert answer.status_code == 400


# --- UI --------------------------------------------------------------------------------------

UI_PAGES = ["/", f"/accounts/{ACME}", f"/accounts/{ACME}/postings/{BACKEND}",
            f"/accounts/{ACME}/opportunities/{ADA}", f"/accounts/{ACME}/authorized-apps",
            f"/accounts/{ACME}/webhooks", "/login"]


def test_ui_pages_render_without_scripts_or_remote_assets(sandbox):
    for path in UI_PAGES:
        page = requests.get(sandbox.url + path)
        assert page.status_code == 200, path
        assert "<script" not in page.text.lower() and " style=" not in page.text.lower(), path
        assert not re.search(r'(src|href)="https?://', page.text), path
    assert requests.get(sandbox.url + "/static/sandbox.css").status_code == 200


def test_pipeline_shows_candidates_per_stage_with_move_forms(sandbox):
    page = requests.get(sandbox.url + f"/accounts/{ACME}/postings/{BACKEND}").text
    assert "Ada Lovelace" in page and "Edsger Dijkstra" not in page  # Edsger is on Frontend
    assert 'form="bulk-move"' in page and ">Move selected</button>" in page
    assert page.count(">Move</button>") == 5


def test_opportunity_page_adds_notes_and_tags(sandbox):
    browser = requests.Session()
    browser.post(sandbox.url + "/login", data={"email": "olivia@acme.example",
                                               "password": "sandbox", "next": "/"})
    base = sandbox.url + f"/accounts/{ACME}/opportunities/{ADA}"
    browser.post(base + "/notes", data={"value": "Call went well <b>really</b>"})
    browser.post(base + "/tags", data={"tag": "Shortlist", "action": "add"})
    page = browser.post(base + "/tags", data={"tag": "Backend", "action": "remove"}).text
    assert "Call went well &lt;b&gt;really&lt;/b&gt;" in page
    assert "Shortlist" in page
    notes = sandbox.admin.notes(ACME)
    assert notes[0]["user"] == OLIVIA and notes[0]["perform_as"] is None
    tags = requests.get(sandbox.url + f"/_sandbox/accounts/{ACME}/state")  # still reachable
    assert tags.status_code == 200


def test_candidate_url_redirects_to_its_page(sandbox):
    answer = requests.get(sandbox.url + f"/candidates/{ADA}", allow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith(f"/accounts/{ACME}/opportunities/{ADA}")


# --- CLI -------------------------------------------------------------------------------------

def test_cli_options_become_config():
    config = build_config(None, "my-app", "s3cret", ("http://127.0.0.1:8000/cb",), 60)
    client = config["SANDBOX_CLIENTS"][0]
    assert (client["client_id"], client["client_secret"]) == ("my-app", "s3cret")
    assert client["redirect_uris"] == ["http://127.0.0.1:8000/cb"]
    assert config["SANDBOX_ACCESS_TOKEN_TTL"] == 60
    assert build_config(None, None, None, (), None) == {}


def test_cli_help_lists_the_options():
    result = CliRunner().invoke(lever_sandbox_command, ["--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--seed", "--client-id", "--client-secret",
                   "--redirect-uri", "--access-token-ttl"):
        assert option in result.output


def test_the_opportunity_page_links_a_note_s_report_and_shows_dates(sandbox):
    """Issue #40, 15: the report link in a note was plain text and times were raw numbers
    ("at 1796649288544"); links in notes are clickable (as in Lever) and the rest stays escaped."""
    [opp] = sandbox.admin.add_candidates(ACME, BACKEND, ASSESSMENT, candidates=[
        {"name": "Katherine Johnson", "emails": ["kj@example.com"]}])
    http = requests.Session()
    page_url = sandbox.url + f"/accounts/{ACME}/opportunities/{opp}"
    http.post(sandbox.url + f"/accounts/{ACME}/opportunities/{opp}/notes",
              data={"value": "Score 80%. View a detailed report on WeCP: http://hub.test/r/abc?x=1&y=2 <b>x</b>"})
    page = http.get(page_url).text
    assert '<a href="http://hub.test/r/abc?x=1&amp;y=2" rel="noopener" target="_blank">' in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert not re.search(r"\b1\d{12}\b", page), "a raw Lever time on the page"
    assert re.search(r"\d\d \w{3} \d{4}, \d\d:\d\d UTC", page)
    assert 'class="disclaimer">A local stand-in for Lever. Not Lever.' in page
