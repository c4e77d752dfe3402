"""`hub demo --scripted`: walk the product's journey over HTTP, as a person would, step by step."""
from __future__ import annotations

import re
import time
from html import unescape

import requests

from .demo import DEMO_ADMIN, DEMO_PASSWORD

#: The sandbox's Super Admin who consents (plugins/wecp_lever/sandbox/seed.json).
LEVER_ADMIN = ("olivia@acme.example", "sandbox")


class StepFailed(RuntimeError):
    pass


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    if match is None:
        raise StepFailed(f"no {name!r} field on the page")
    return unescape(match.group(1))


def sign_in(http: requests.Session, hub_url: str, email: str, password: str) -> None:
    """Sign in to the hub with its form (CSRF token included)."""
    page = http.get(f"{hub_url}/login", timeout=10)
    answer = http.post(f"{hub_url}/login", data={
        "email": email, "password": password, "csrf_token": _hidden(page.text, "csrf_token")},
        allow_redirects=False, timeout=10)
    if answer.status_code != 302:
        raise StepFailed(f"sign-in answered {answer.status_code}, not a redirect")


def connect_lever(http: requests.Session, hub_url: str, sandbox_url: str,
                  lever_user: tuple[str, str] = LEVER_ADMIN) -> None:
    """Connect → the sandbox's sign-in and consent forms → Accept → back on the hub."""
    page = http.get(f"{hub_url}/settings/integrations", timeout=10)
    answer = http.post(f"{hub_url}/integrations/wecp_lever/connect",
                       data={"csrf_token": _hidden(page.text, "csrf_token")},
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
        "consent_id": _hidden(consent.text, "consent_id"), "decision": "accept"},
        allow_redirects=False, timeout=10)
    callback = decision.headers.get("Location", "")
    if not callback.startswith(hub_url):
        raise StepFailed("the sandbox did not send us back to the hub "
                         f"({callback or decision.status_code})")
    back = http.get(callback, timeout=30)
    if "Lever is connected" not in back.text:
        flash = re.search(r'class="flash[^"]*"[^>]*>([^<]+)<', back.text)
        raise StepFailed(flash.group(1) if flash else f"no confirmation (HTTP {back.status_code})")


def integration_status(http: requests.Session, hub_url: str, key: str = "wecp_lever") -> dict:
    cards = http.get(f"{hub_url}/api/v1/integrations", timeout=10).json()["data"]
    return next(card for card in cards if card["key"] == key)


def wait_for_status(http: requests.Session, hub_url: str, status: str = "Active",
                    timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        card = integration_status(http, hub_url)
        if card["status"] == status:
            return card
        if time.monotonic() > deadline:
            problem = card.get("setup_error") or card.get("revoked_reason") or ""
            raise StepFailed(f"still {card['status']!r} after {timeout:.0f}s {problem}".strip())
        time.sleep(0.3)


def link_sample_test(http: requests.Session, hub_url: str, posting: str = "Backend Engineer",
                     stage: str = "Assessment") -> tuple[str, str]:
    """Tests › the sample test › Link job posting from Lever: pick the posting and stage.

    Returns the Lever ids of the posting and the stage.
    """
    from .assessments.demo import SAMPLE_TITLE

    tests = http.get(f"{hub_url}/tests", timeout=10).text
    test_path = _href(tests, SAMPLE_TITLE)
    link_path = _href(http.get(hub_url + test_path, timeout=10).text, "Link job posting from Lever")
    form = http.get(hub_url + link_path, timeout=10).text
    posting_id = re.search(r'name="posting_id" value="([^"]+)"[^>]*>\s*<span>'
                           + re.escape(posting) + "<", form)
    stage_id = re.search(r'<option value="([^"]+)"[^>]*>' + re.escape(stage) + "<", form)
    if posting_id is None or stage_id is None:
        raise StepFailed(f"the link page offers no posting {posting!r} or stage {stage!r}")
    answer = http.post(hub_url + link_path, data={
        "csrf_token": _hidden(form, "csrf_token"), "posting_id": posting_id.group(1),
        "stage_id": stage_id.group(1)}, allow_redirects=False, timeout=30)
    if answer.status_code != 302 and "already linked" not in answer.text:
        raise StepFailed(f"linking answered HTTP {answer.status_code}")
    return posting_id.group(1), stage_id.group(1)


def _href(html: str, text: str) -> str:
    match = re.search(r'href="([^"]+)"[^>]*>' + re.escape(text) + "<", html)
    if match is None:
        raise StepFailed(f"no link {text!r} on the page")
    return unescape(match.group(1))


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


def invitation_link(http: requests.Session, hub_url: str, email: str, timeout: float = 30.0) -> str:
    """The candidate's link from the invitation in the outbox (every email is listed there)."""
    deadline = time.monotonic() + timeout
    while True:
        outbox = unescape(http.get(f"{hub_url}/dev/outbox", timeout=10).text)
        for article in outbox.split("<article")[1:]:
            link = re.search(r"(https?://\S+/t/[A-Za-z0-9_-]+)", article)
            if f"To {email}" in article and link:
                return link.group(1)
        if time.monotonic() > deadline:
            raise StepFailed(f"no invitation to {email} after {timeout:.0f}s")
        time.sleep(0.3)


def take_sample_test(url: str) -> None:
    """As the candidate (no WeCP account): Start, answer every question right, Submit."""
    from .assessments.demo import SAMPLE_TEST

    right = {q["text"]: [q["options"][i] for i in q["correct"]] for q in SAMPLE_TEST["questions"]}
    candidate = requests.Session()
    intro = candidate.get(url, timeout=10).text
    questions = candidate.post(f"{url}/start", data={"csrf_token": _hidden(intro, "csrf_token")},
                               timeout=10).text
    answers = {"csrf_token": _hidden(questions, "csrf_token")}
    for block in questions.split("<fieldset")[1:]:
        text = unescape(re.search(r'class="prewrap question-text">([^<]*)<', block).group(1))
        for name, value, option in re.findall(
                r'name="(q-[^"]+)" value="(\d+)">\s*<span>([^<]*)</span>', block):
            if unescape(option) in right.get(text, []):
                answers.setdefault(name, []).append(value)
    done = candidate.post(f"{url}/submit", data=answers, timeout=10)
    if "Thank you" not in done.text:
        raise StepFailed(f"submitting answered HTTP {done.status_code} without a thank-you")


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
    """Run every step, printing ✓/✗ and its time; stop at the first failure. True if all passed."""
    http = requests.Session()
    candidate_email = f"candidate-{int(time.time())}@example.com"
    found: dict = {}
    steps = [
        ("sign in to WeCP", lambda: sign_in(http, hub_url, email, password)),
        ("connect Lever (sign in to the sandbox, Accept)",
         lambda: connect_lever(http, hub_url, sandbox_url)),
        ("Lever shows Active (webhook registered by a worker)",
         lambda: wait_for_status(http, hub_url, "Active")),
        ("link the sample test to a Lever posting at stage Assessment",
         lambda: found.update(linked=link_sample_test(http, hub_url))),
        ("a new candidate is moved to Assessment in Lever",
         lambda: found.update(opportunity=move_new_candidate(sandbox_url, *found["linked"],
                                                             candidate_email))),
        ("the invitation email arrives",
         lambda: found.update(link=invitation_link(http, hub_url, candidate_email))),
        ("the candidate takes the test", lambda: take_sample_test(found["link"])),
        ("the score is a note in Lever, with the report link",
         lambda: found.update(note=wait_for_note(sandbox_url, found["opportunity"]))),
    ]
    for title, step in steps:
        started = time.monotonic()
        try:
            step()
        except Exception as exc:  # any failure ends the journey with what went wrong
            echo(f"✗ {title} ({time.monotonic() - started:.2f}s): {exc}")
            return False
        echo(f"✓ {title} ({time.monotonic() - started:.2f}s)")
    return True

