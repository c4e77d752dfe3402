"""In a real browser: an admin connects Lever, sees it Active, revokes it in the hub or in Lever."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.steps import (
    LEVER_ACCOUNT,
    STAGE_CHANGE_HINT,
    connect_lever,
    expect_status,
    lever_card,
    open_integrations,
    revoke_in_hub,
    revoke_in_lever,
    sign_in,
    wait_for_status,
)
from tests.stack import loud_lines

pytestmark = [pytest.mark.browser, pytest.mark.slow]


# --- tests ------------------------------------------------------------------------------------

def test_admin_connects_lever_and_sees_it_active(page, stack, admin_account):
    sign_in(page, stack.hub_url, *admin_account)
    connect_lever(page, stack.hub_url)
    wait_for_status(page, stack.hub_url, "Active")
    card = lever_card(page)
    expect(card.locator(".account")).to_have_text("acme.example")
    expect(card.locator(".hint-connected").first).to_contain_text(STAGE_CHANGE_HINT)
    expect(card.get_by_role("link", name="Revoke…")).to_be_visible()
    expect(card.get_by_role("button", name="Connect")).to_have_count(0)
    # The worker registered exactly one webhook per event in Lever, each pointing at this hub.
    hooks = stack.sandbox.admin.webhooks(LEVER_ACCOUNT)
    assert sorted(h["event"] for h in hooks) == ["candidateArchiveChange", "candidateStageChange"]
    assert all(h["url"].startswith(stack.hub_url + "/webhooks/wecp_lever/") for h in hooks)


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
    from plugins.wecp_lever.jobs import register_webhook

    stack.enqueue(register_webhook, connection_id)
    wait_for_status(page, stack.hub_url, "Revoked")
    card = lever_card(page)
    expect(card.locator(".notice")).to_contain_text("Lever no longer accepts this connection")
    expect(card.get_by_role("button", name="Reconnect")).to_be_visible()
    expect(card.locator(".hint-connected")).to_have_count(0)
    # An expected state: the worker said so in one warning line, with no traceback or ERROR.
    assert loud_lines(stack) == []


def test_the_card_says_who_accepts_then_ticks_its_checklist_by_itself(page, stack, admin_account):
    """Before Connect: who must accept and what is asked. After: no reload by the test — the
    page's own script follows Setting up… → Active and ticks "Lever sends stage changes" when
    Lever's Verify Connection arrives."""
    import requests

    sign_in(page, stack.hub_url, *admin_account)
    open_integrations(page, stack.hub_url)
    card = lever_card(page)
    expect(card.locator(".consent")).to_contain_text("a Lever Super Admin")
    expect(card.locator(".consent li")).to_have_count(5)
    connect_lever(page, stack.hub_url)
    expect(card.locator(".badge")).to_have_text("Active", timeout=20_000)
    steps = card.locator(".checklist .step")
    expect(steps).to_have_count(4)
    expect(steps.nth(0)).to_have_class(re.compile(r"\bdone\b"))
    expect(steps.nth(1)).to_have_class(re.compile(r"\btodo\b"))
    expect(steps.nth(1)).to_contain_text("Verify Connection")
    [hook] = [h for h in stack.sandbox.admin.webhooks(LEVER_ACCOUNT) if h["event"] == "candidateStageChange"]
    assert requests.post(hook["url"], data=b"", timeout=10).status_code == 200  # Lever's Verify Connection
    expect(steps.nth(1)).to_have_class(re.compile(r"\bdone\b"), timeout=15_000)
    expect(steps.nth(1)).to_contain_text("Verify Connection reached WeCP")
    # Its reminder goes with it (it stayed, orange, after the tick: issue #40, 6); the other
    # switch's reminder stays until an archive change arrives.
    expect(card.locator(".hint-connected")).to_have_count(1)
    expect(card.locator(".hint-connected")).to_contain_text("Candidate Archive Change")
    expect(steps.nth(2)).to_have_class(re.compile(r"\btodo\b"))
