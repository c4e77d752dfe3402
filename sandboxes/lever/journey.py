"""The Lever journey over HTTP: connect, link, move a candidate, email, test, note.

Used by the scripted demo, the end-to-end tests and the benchmarks (``sandboxes.journey`` holds
the steps every ATS shares).
"""
from __future__ import annotations

import re
import time

import requests

from ..journey import (
    DEMO_ADMIN,
    DEMO_PASSWORD,
    StepFailed,
    hidden,
    href,
    invitation_link,
    run_steps,
    sign_in,
    take_sample_test,
    wait_for_status,
)

#: The plugin this sandbox stands in for.
PLUGIN_KEY = "wecp_lever"
#: The sandbox's Super Admin who consents (sandboxes/lever/seed.json).
LEVER_ADMIN = ("olivia@acme.example", "sandbox")


def connect_lever(http: requests.Session, hub_url: str, sandbox_url: str,
                  lever_user: tuple[str, str] = LEVER_ADMIN) -> None:
    """Connect → the sandbox's sign-in and consent forms → Accept → back on the hub."""
    page = http.get(f"{hub_url}/settings/integrations", timeout=10)
    answer = http.post(f"{hub_url}/integrations/wecp_lever/connect",
                       data={"csrf_token": hidden(page.text, "csrf_token")},
                       allow_redirects=False, timeout=10)
    authorize_url = answer.headers.get("Location", "")
    if not authorize_url.startswith(sandbox_url):
        raise StepFailed("Connect did not lead to the Lever sandbox "
                         f"({authorize_url or answer.status_code})")
    consent = http.get(authorize_url, timeout=10)
    if 'name="consent_id"' not in consent.text:  # not signed in to the sandbox yet
        http.post(f"{sandbox_url}/login", data={
            "email": lever_user[0], "password": lever_user[1],
            "next": authorize_url[len(sandbox_url):]}, timeout=10)
        consent = http.get(authorize_url, timeout=10)
    decision = http.post(f"{sandbox_url}/authorize/decision", data={
        "consent_id": hidden(consent.text, "consent_id"), "decision": "accept"},
        allow_redirects=False, timeout=10)
    callback = decision.headers.get("Location", "")
    if not callback.startswith(hub_url):
        raise StepFailed("the sandbox did not send us back to the hub "
                         f"({callback or decision.status_code})")
    back = http.get(callback, timeout=30)
    if "Lever is connected" not in back.text:
        flash = re.search(r'class="flash[^"]*"[^>]*>([^<]+)<', back.text)
        raise StepFailed(flash.group(1) if flash else f"no confirmation (HTTP {back.status_code})")


def switch_stage_change_on(http: requests.Session, sandbox_url: str, account: str = "acme") -> None:
    """In the sandbox's Webhooks settings, turn "Candidate Stage Change" on (the demo's Lever
    starts with it off, as a new account does; on already is fine)."""
    http.post(f"{sandbox_url}/accounts/{account}/webhook-toggle",
              data={"candidateStageChange": "on"}, timeout=10).raise_for_status()
    toggles = requests.get(f"{sandbox_url}/_sandbox/accounts/{account}/state",
                           timeout=10).json()["data"]["webhook_toggles"]
    if not toggles.get("candidateStageChange"):
        raise StepFailed("Candidate Stage Change is still off in the sandbox")


def wait_for_first_event(http: requests.Session, hub_url: str, timeout: float = 30.0) -> None:
    """The Lever card's checklist ticks "Lever sends stage changes" once one has arrived."""
    deadline = time.monotonic() + timeout
    while True:
        page = http.get(f"{hub_url}/settings/integrations", timeout=10).text
        step = re.search(r'<li class="step (done|todo)">(?:(?!</li>).)*?Lever sends stage changes', page, re.S)
        if step and step.group(1) == "done":
            return
        if time.monotonic() > deadline:
            raise StepFailed("the Lever card's checklist does not tick “Lever sends stage changes”")
        time.sleep(0.3)


def link_sample_test(http: requests.Session, hub_url: str, posting: str = "Backend Engineer",
                     stage: str = "Assessment") -> tuple[str, str]:
    """Tests › the sample test › Link job posting from Lever: pick the posting and stage.

    Returns the Lever ids of the posting and the stage.
    """
    from hub.assessments.demo import SAMPLE_TITLE

    tests = http.get(f"{hub_url}/tests", timeout=10).text
    test_path = href(tests, SAMPLE_TITLE)
    link_path = href(http.get(hub_url + test_path, timeout=10).text, "Link job posting from Lever")
    form = http.get(hub_url + link_path, timeout=10).text
    posting_id = re.search(r'name="posting_id" value="([^"]+)"[^>]*>\s*<span>'
                           + re.escape(posting) + "<", form)
    stage_id = re.search(r'<option value="([^"]+)"[^>]*>' + re.escape(stage) + "<", form)
    if posting_id is None or stage_id is None:
        raise StepFailed(f"the link page offers no posting {posting!r} or stage {stage!r}")
    answer = http.post(hub_url + link_path, data={
        "csrf_token": hidden(form, "csrf_token"), "posting_id": posting_id.group(1),
        "stage_id": stage_id.group(1)}, allow_redirects=False, timeout=30)
    if answer.status_code != 302 and "already linked" not in answer.text:
        raise StepFailed(f"linking answered HTTP {answer.status_code}")
    return posting_id.group(1), stage_id.group(1)


def move_new_candidate(sandbox_url: str, posting_id: str, stage_id: str, email: str,
                       account: str = "acme") -> str:
    """A candidate applies to the posting (the sandbox's admin API), then moves to the stage."""
    admin = f"{sandbox_url}/_sandbox/accounts/{account}"
    created = requests.post(f"{admin}/candidates", json={
        "posting_id": posting_id, "stage_id": "applicant-new",
        "candidates": [{"name": "Demo Candidate", "emails": [email]}]}, timeout=10)
    created.raise_for_status()
    opportunity = created.json()["data"][0]
    requests.post(f"{admin}/move", json={"opportunity_ids": [opportunity], "stage_id": stage_id},
                  timeout=10).raise_for_status()
    return opportunity


def wait_for_note(sandbox_url: str, opportunity_id: str, account: str = "acme",
                  timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        notes = requests.get(f"{sandbox_url}/_sandbox/accounts/{account}/notes",
                             timeout=10).json()["data"]
        mine = [n["value"] for n in notes if n["opportunity_id"] == opportunity_id]
        if mine:
            if "View a detailed report on WeCP: " not in mine[0]:
                raise StepFailed(f"the note has no report link: {mine[0][:200]!r}")
            return mine[0]
        if time.monotonic() > deadline:
            raise StepFailed(f"no note on the Lever opportunity after {timeout:.0f}s")
        time.sleep(0.3)


def run_journey(hub_url: str, sandbox_url: str, env: dict | None = None, *,
                email: str = DEMO_ADMIN, password: str = DEMO_PASSWORD, echo=print) -> bool:
    """The whole Lever journey, step by step; True if every step passed."""
    http = requests.Session()
    candidate_email = f"candidate-{int(time.time())}@example.com"
    found: dict = {}
    return run_steps([
        ("sign in to WeCP", lambda: sign_in(http, hub_url, email, password)),
        ("connect Lever (sign in to the sandbox, Accept)",
         lambda: connect_lever(http, hub_url, sandbox_url)),
        ("Lever shows Active (webhook registered by a worker)",
         lambda: wait_for_status(http, hub_url, PLUGIN_KEY, "Active")),
        ("switch Candidate Stage Change on in Lever (the sandbox's Webhooks settings)",
         lambda: switch_stage_change_on(http, sandbox_url)),
        ("link the sample test to a Lever posting at stage Assessment",
         lambda: found.update(linked=link_sample_test(http, hub_url))),
        ("a new candidate is moved to Assessment in Lever",
         lambda: found.update(opportunity=move_new_candidate(sandbox_url, *found["linked"],
                                                             candidate_email))),
        ("the Lever card confirms the first stage change arrived",
         lambda: wait_for_first_event(http, hub_url)),
        ("the invitation email arrives",
         lambda: found.update(link=invitation_link(http, hub_url, candidate_email))),
        ("the candidate takes the test", lambda: take_sample_test(found["link"])),
        ("the score is a note in Lever, with the report link",
         lambda: found.update(note=wait_for_note(sandbox_url, found["opportunity"]))),
    ], echo=echo)
