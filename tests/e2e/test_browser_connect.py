"""In a real browser: an admin connects Lever, sees it Active, revokes it in the hub or in Lever."""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LEVER_ACCOUNT = "acme"
LEVER_ADMIN = ("olivia@acme.example", "sandbox")
STAGE_CHANGE_HINT = re.compile(r"Candidate Stage Change.{0,3} on")


# --- steps (reused by the longer journeys) ---------------------------------------------------

def sign_in(page: Page, hub_url: str, email: str, password: str) -> None:
    """Sign in to WeCP from its sign-in page and land on the home page."""
    page.goto(f"{hub_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".signout .who")).to_contain_text(email)


def open_integrations(page: Page, hub_url: str) -> None:
    page.goto(f"{hub_url}/settings/integrations")
    expect(page.get_by_role("heading", name="Settings › Integrations")).to_be_visible()


def lever_card(page: Page):
    return page.locator("#integration-wecp_lever")


def expect_status(page: Page, status: str) -> None:
    expect(lever_card(page).locator(".badge")).to_have_text(status)


def wait_for_status(page: Page, hub_url: str, status: str, timeout: float = 20.0) -> None:
    """Reload Settings › Integrations until the Lever card shows ``status`` (work is async)."""
    deadline = time.monotonic() + timeout
    while True:
        open_integrations(page, hub_url)
        if lever_card(page).get_attribute("data-status") == status:
            return
        if time.monotonic() > deadline:
            expect_status(page, status)  # fails with what the card shows instead
        page.wait_for_timeout(250)


def connect_lever(page: Page, hub_url: str, email: str = LEVER_ADMIN[0],
                  password: str = LEVER_ADMIN[1]) -> None:
    """Connect → sign in to Lever (the sandbox) → Accept → back on WeCP, connected."""
    open_integrations(page, hub_url)
    expect_status(page, "Not connected")
    lever_card(page).get_by_role("button", name="Connect").click()
    expect(page.get_by_role("heading", name="Sign in to Lever (sandbox)")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=re.compile(r"WeCP wants to access"))).to_be_visible()
    page.get_by_role("button", name="Accept").click()
    page.wait_for_url(f"{hub_url}/settings/integrations")
    expect(page.locator(".flash-success")).to_contain_text("Lever is connected")


def revoke_in_hub(page: Page, hub_url: str) -> None:
    open_integrations(page, hub_url)
    lever_card(page).get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash")).to_contain_text("Lever is disconnected")


def revoke_in_lever(page: Page, sandbox_url: str, account: str = LEVER_ACCOUNT) -> None:
    """In the sandbox (signed in from the consent step): Authorized Apps › Revoke access."""
    page.goto(f"{sandbox_url}/accounts/{account}")
    page.get_by_role("link", name="Authorized Apps").click()
    row = page.get_by_role("row").filter(has_text="WeCP")
    row.get_by_role("button", name="Revoke access").click()
    expect(page.get_by_text("No app is authorized for this account.")).to_be_visible()


# --- tests ------------------------------------------------------------------------------------

def test_admin_connects_lever_and_sees_it_active(page, stack, admin_account):
    sign_in(page, stack.hub_url, *admin_account)
    connect_lever(page, stack.hub_url)
    wait_for_status(page, stack.hub_url, "Active")
    card = lever_card(page)
    expect(card.locator(".account")).to_have_text("acme.example")
    expect(card.locator(".hint-connected")).to_contain_text(STAGE_CHANGE_HINT)
    expect(card.get_by_role("button", name="Revoke")).to_be_visible()
    expect(card.get_by_role("button", name="Connect")).to_have_count(0)
    # The worker registered exactly one webhook in Lever, pointing at this hub.
    hooks = stack.sandbox.admin.webhooks(LEVER_ACCOUNT)
    assert [h["url"].startswith(stack.hub_url + "/webhooks/wecp_lever/") for h in hooks] == [True]


def test_revoke_in_the_hub_disconnects(page, stack, admin_account):
    sign_in(page, stack.hub_url, *admin_account)
    connect_lever(page, stack.hub_url)
    wait_for_status(page, stack.hub_url, "Active")
    revoke_in_hub(page, stack.hub_url)
    expect_status(page, "Not connected")
    expect(lever_card(page).get_by_role("button", name="Connect")).to_be_visible()
    # Revoking cleans up in Lever too: the webhook is gone.
    assert stack.sandbox.admin.webhooks(LEVER_ACCOUNT) == []


def test_revoked_in_lever_shows_revoked_after_the_next_call(page, stack, admin_account):
    from hub.extensions import db
    from hub.models import Connection

    sign_in(page, stack.hub_url, *admin_account)
    connect_lever(page, stack.hub_url)
    wait_for_status(page, stack.hub_url, "Active")
    revoke_in_lever(page, stack.sandbox.url)
    # Lever tells nobody: the hub only learns it at its next call. Nothing called yet.
    wait_for_status(page, stack.hub_url, "Active", timeout=0)
    connection_id = stack.query(lambda: db.session.scalar(db.select(Connection.id)))
    stack.enqueue("plugins.wecp_lever.jobs.register_webhook", connection_id)
    wait_for_status(page, stack.hub_url, "Revoked")
    card = lever_card(page)
    expect(card.locator(".notice")).to_contain_text("Lever no longer accepts this connection")
    expect(card.get_by_role("button", name="Reconnect")).to_be_visible()
    expect(card.locator(".hint-connected")).to_have_count(0)
