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


def run_journey(hub_url: str, sandbox_url: str, env: dict | None = None, *,
                email: str = DEMO_ADMIN, password: str = DEMO_PASSWORD, echo=print) -> bool:
    """Run every step, printing ✓/✗ and its time; stop at the first failure. True if all passed."""
    http = requests.Session()
    steps = [
        ("sign in to WeCP", lambda: sign_in(http, hub_url, email, password)),
        ("connect Lever (sign in to the sandbox, Accept)",
         lambda: connect_lever(http, hub_url, sandbox_url)),
        ("Lever shows Active (webhook registered by a worker)",
         lambda: wait_for_status(http, hub_url, "Active")),
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

