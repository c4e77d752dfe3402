"""Steps of a person's journey through the hub over HTTP, shared by every sandbox's journey.

The scripted demo (``python -m sandboxes.demo --scripted``), the end-to-end tests and the
benchmarks drive the hub with these, as a person would with a browser: forms, CSRF tokens,
redirects. Each ATS's journey (``sandboxes/<ats>/journey.py``) adds its own steps.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from html import unescape

import requests

#: Markup inside a question or an option (e.g. <code>): not part of its text.
TAGS = re.compile(r"<[^>]+>")

#: The demo's sign-in (a development database only).
DEMO_ORG = "Acme Hiring"
DEMO_ADMIN = "admin@acme.example"
DEMO_PASSWORD = "demo-password"
#: The demo's operator of the hub: the job dashboard at /admin/rq is theirs alone.
DEMO_OPERATOR = "ops@wecp.example"
DEMO_OPERATOR_PASSWORD = "demo-operator-password"


class StepFailed(RuntimeError):
    pass


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    if match is None:
        raise StepFailed(f"no {name!r} field on the page")
    return unescape(match.group(1))


def sign_in(http: requests.Session, hub_url: str, email: str, password: str) -> None:
    """Sign in to the hub with its form (CSRF token included)."""
    page = http.get(f"{hub_url}/login", timeout=10)
    answer = http.post(f"{hub_url}/login", data={
        "email": email, "password": password, "csrf_token": hidden(page.text, "csrf_token")},
        allow_redirects=False, timeout=10)
    if answer.status_code != 302:
        raise StepFailed(f"sign-in answered {answer.status_code}, not a redirect")


def integration_status(http: requests.Session, hub_url: str, key: str) -> dict:
    cards = http.get(f"{hub_url}/api/v1/integrations", timeout=10).json()["data"]
    return next(card for card in cards if card["key"] == key)


def wait_for_status(http: requests.Session, hub_url: str, key: str, status: str = "Active",
                    timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        card = integration_status(http, hub_url, key)
        if card["status"] == status:
            return card
        if time.monotonic() > deadline:
            problem = card.get("setup_error") or card.get("revoked_reason") or ""
            raise StepFailed(f"still {card['status']!r} after {timeout:.0f}s {problem}".strip())
        time.sleep(0.3)


def href(html: str, text: str) -> str:
    match = re.search(r'href="([^"]+)"[^>]*>' + re.escape(text) + "<", html)
    if match is None:
        raise StepFailed(f"no link {text!r} on the page")
    return unescape(match.group(1))


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
    from hub.assessments.demo import SAMPLE_TEST

    def plain(text: str) -> str:  # as the page shows it: `code` marks are not text
        return text.replace("`", "")

    right = {plain(q["text"]): [plain(q["options"][i]) for i in q["correct"]] for q in SAMPLE_TEST["questions"]}
    candidate = requests.Session()
    intro = candidate.get(url, timeout=10).text
    questions = candidate.post(f"{url}/start", data={"csrf_token": hidden(intro, "csrf_token")},
                               timeout=10).text
    answers = {"csrf_token": hidden(questions, "csrf_token")}
    for block in questions.split("<fieldset")[1:]:
        text = unescape(TAGS.sub("", re.search(r'class="prewrap question-text"[^>]*>(.*?)</p>', block, re.S).group(1)))
        for name, value, option in re.findall(
                r'name="(q-[^"]+)" value="(\d+)">\s*<span>(.*?)</span>', block, re.S):
            if unescape(TAGS.sub("", option)) in right.get(text, []):
                answers.setdefault(name, []).append(value)
    done = candidate.post(f"{url}/submit", data=answers, timeout=10)
    if "Thank you" not in done.text:
        raise StepFailed(f"submitting answered HTTP {done.status_code} without a thank-you")


def run_steps(steps: list[tuple[str, Callable[[], object]]], echo=print) -> bool:
    """Run each ``(title, step)``, printing ✓/✗ and its time; stop at the first failure.

    Ends with a summary line (steps passed, total time). True when every step passed.
    """
    began, passed = time.monotonic(), 0
    for title, step in steps:
        started = time.monotonic()
        try:
            step()
        except Exception as exc:  # any failure ends the journey with what went wrong
            echo(f"✗ {title} ({time.monotonic() - started:.2f}s): {exc}")
            break
        passed += 1
        echo(f"✓ {title} ({time.monotonic() - started:.2f}s)")
    echo(f"{passed} of {len(steps)} steps passed in {time.monotonic() - began:.1f}s")
    return passed == len(steps)
