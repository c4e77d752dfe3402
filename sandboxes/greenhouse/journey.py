"""The Greenhouse journey over HTTP: a key, Support enters it, Harvest connected and a stage picked
for those who pass, a test picked for the take-home stage, Send Test, the email, the test, the
result shown on the candidate in Greenhouse, then the note and the move through Harvest.

Used by the scripted demo and the end-to-end tests (``sandboxes.journey`` holds the shared steps).
"""
from __future__ import annotations

import re
import time
from html import unescape

import requests

from ..journey import (
    DEMO_ADMIN,
    DEMO_PASSWORD,
    StepFailed,
    hidden,
    invitation_link,
    run_steps,
    sign_in,
    take_sample_test,
)

#: The plugin this sandbox stands in for.
PLUGIN_KEY = "wecp_greenhouse"
JOB = "Backend Engineer"
TAKE_HOME = "Take Home Test"


def issue_key(http: requests.Session, hub_url: str) -> tuple[str, dict[str, str]]:
    """Settings › Integrations › Greenhouse › Connect: the key shown once, and the addresses."""
    page = http.get(f"{hub_url}/settings/integrations", timeout=10)
    token = hidden(page.text, "csrf_token")
    answer = http.post(f"{hub_url}/integrations/{PLUGIN_KEY}/connect", data={"csrf_token": token}, timeout=10)
    if "use Rotate key for a new key" in answer.text:
        # Connected by an earlier run (the sandbox forgets its key on a restart): a new key.
        answer = http.post(f"{hub_url}/integrations/{PLUGIN_KEY}/keys/rotate", data={"csrf_token": token},
                           timeout=10)
    key = re.search(r'id="partner-key" class="secret" readonly value="([^"]+)"', answer.text)
    if key is None:
        raise StepFailed(f"Connect showed no key (HTTP {answer.status_code})")
    urls = {name: unescape(url) for name, url in re.findall(r"<dt>(\w+)</dt><dd><code>([^<]+)</code>", answer.text)}
    if set(urls) != {"list_tests", "send_test", "test_status", "response_error"}:
        raise StepFailed(f"the key page lists {sorted(urls)}, not Greenhouse's four calls")
    return unescape(key.group(1)), urls


def support_enters_key(sandbox_url: str, key: str, urls: dict[str, str]) -> None:
    """Greenhouse Support's form in the sandbox: the key and the four addresses."""
    requests.post(f"{sandbox_url}/support", data={"key": key, **urls}, timeout=10).raise_for_status()


def connect_harvest(http: requests.Session, hub_url: str, sandbox_url: str) -> None:
    """The Greenhouse card's Harvest Connect → the sandbox's consent page → Authorize → back."""
    token = hidden(http.get(f"{hub_url}/settings/integrations", timeout=10).text, "csrf_token")
    answer = http.post(f"{hub_url}/integrations/{PLUGIN_KEY}/connect", data={"csrf_token": token, "provider": "harvest"},
                       allow_redirects=False, timeout=10)
    consent = answer.headers.get("Location", "")
    if not consent.startswith(f"{sandbox_url}/oauth/authorize"):
        raise StepFailed(f"Connect did not lead to Greenhouse's consent page (HTTP {answer.status_code})")
    page = requests.get(consent, timeout=10).text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    back = requests.post(f"{sandbox_url}/oauth/authorize", data={**{k: unescape(v) for k, v in fields.items()},
                                                                  "decision": "accept"},
                         allow_redirects=False, timeout=10).headers.get("Location", "")
    done = http.get(back, timeout=30)
    if "Greenhouse Harvest is connected" not in done.text:
        raise StepFailed("WeCP did not say Greenhouse Harvest is connected")


def pick_onsite(http: requests.Session, hub_url: str, sandbox_url: str) -> None:
    """On WeCP's Greenhouse page, candidates who pass the job's test move to Onsite."""
    page = http.get(f"{hub_url}/integrations/{PLUGIN_KEY}/harvest", timeout=30).text
    job = job_id(sandbox_url)
    select = re.search(rf'<select id="job-{job}" name="job-{job}">(.*?)</select>', page, re.S)
    onsite = select and re.search(r'<option value="(\d+)"[^>]*>Onsite<', select.group(1))
    if onsite is None:
        raise StepFailed("WeCP's Harvest page does not offer the job's Onsite stage")
    http.post(f"{hub_url}/integrations/{PLUGIN_KEY}/harvest", data={
        "csrf_token": hidden(page, "csrf_token"), f"job-{job}": onsite.group(1), "notes": "on"},
        timeout=30).raise_for_status()


def wait_for_note_and_move(sandbox_url: str, candidate_id: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = requests.get(f"{sandbox_url}/_sandbox/harvest", timeout=10).json()["data"]
        noted = any(n["candidate_id"] == candidate_id for n in seen["notes"])
        if noted and seen["moves"]:
            return
        if time.monotonic() > deadline:
            raise StepFailed(f"after {timeout:.0f}s: note {'seen' if noted else 'missing'}, "
                             f"{len(seen['moves'])} move(s)")
        time.sleep(0.3)


def job_id(sandbox_url: str, name: str = JOB) -> int:
    jobs = requests.get(f"{sandbox_url}/_sandbox/state", timeout=10).json()["data"]["jobs"]
    return next(job["id"] for job in jobs if job["name"] == name)


def choose_sample_test(sandbox_url: str) -> str:
    """The job's take-home stage lists WeCP's tests (Greenhouse calls list_tests); pick the sample."""
    from hub.assessments.demo import SAMPLE_TITLE

    job = job_id(sandbox_url)
    page = requests.get(f"{sandbox_url}/jobs/{job}", timeout=30).text
    option = re.search(r'<option value="([^"]+)">' + re.escape(SAMPLE_TITLE) + "<", page)
    form = re.search(r'<form method="post" action="([^"]+/test)">', page)
    if option is None or form is None:
        raise StepFailed(f"the take-home stage does not offer {SAMPLE_TITLE!r}")
    requests.post(sandbox_url + form.group(1), data={"partner_test_id": option.group(1)},
                  timeout=30).raise_for_status()
    return option.group(1)


def send_test_to_new_candidate(sandbox_url: str, email: str) -> int:
    """A candidate applies, is moved to the take-home stage, and the recruiter clicks Send Test."""
    job = job_id(sandbox_url)
    admin = f"{sandbox_url}/_sandbox"
    added = requests.post(f"{admin}/jobs/{job}/candidates", json={
        "first_name": "Demo", "last_name": "Candidate", "email": email}, timeout=10).json()["data"]
    requests.post(f"{admin}/applications/{added['application_id']}/stage", json={"stage": TAKE_HOME},
                  timeout=10).raise_for_status()
    page = requests.post(f"{sandbox_url}/applications/{added['application_id']}/send_test", timeout=30).text
    if "Test sent." not in page:
        problem = re.search(r'role="status">([^<]+)<', page)
        raise StepFailed(problem.group(1) if problem else "Send Test did not say it sent the test")
    return added["candidate_id"]


def wait_for_result(sandbox_url: str, email: str, timeout: float = 60.0) -> dict:
    """The candidate's take-home test in Greenhouse, once complete (WeCP's PATCH, then test_status)."""
    deadline = time.monotonic() + timeout
    while True:
        state = requests.get(f"{sandbox_url}/_sandbox/state", timeout=10).json()["data"]
        done = [t for t in state["take_home_tests"] if t["status"] == "complete"]
        if done:
            if not done[0]["profile_url"]:
                raise StepFailed("complete without a report link")
            return done[0]
        if time.monotonic() > deadline:
            raise StepFailed(f"no complete result in Greenhouse after {timeout:.0f}s")
        time.sleep(0.3)


def run_journey(hub_url: str, sandbox_url: str, env: dict | None = None, *,
                email: str = DEMO_ADMIN, password: str = DEMO_PASSWORD, echo=print) -> bool:
    """The whole Greenhouse journey, step by step; True if every step passed."""
    http = requests.Session()
    candidate_email = f"gh-candidate-{int(time.time())}@example.com"
    found: dict = {}
    return run_steps([
        ("sign in to WeCP", lambda: sign_in(http, hub_url, email, password)),
        ("connect Greenhouse: WeCP shows a key once, with four addresses",
         lambda: found.update(zip(("key", "urls"), issue_key(http, hub_url), strict=True))),
        ("Greenhouse Support enters the key and addresses (the sandbox's Support form)",
         lambda: support_enters_key(sandbox_url, found["key"], found["urls"])),
        ("the take-home stage lists WeCP's tests; the sample test is picked",
         lambda: choose_sample_test(sandbox_url)),
        ("connect Greenhouse Harvest: a Site Admin authorizes WeCP in the sandbox",
         lambda: connect_harvest(http, hub_url, sandbox_url)),
        ("candidates who pass move to Onsite (picked from Greenhouse's stages)",
         lambda: pick_onsite(http, hub_url, sandbox_url)),
        ("a new candidate is moved to Take Home Test and the recruiter clicks Send Test",
         lambda: found.update(candidate=send_test_to_new_candidate(sandbox_url, candidate_email))),
        ("the invitation email arrives",
         lambda: found.update(link=invitation_link(http, hub_url, candidate_email))),
        ("the candidate takes the test", lambda: take_sample_test(found["link"])),
        ("Greenhouse shows the result: complete, the score and the report link",
         lambda: found.update(result=wait_for_result(sandbox_url, candidate_email))),
        ("through Harvest: the score is a note on the candidate, who moved to Onsite",
         lambda: wait_for_note_and_move(sandbox_url, found["candidate"])),
    ], echo=echo)
