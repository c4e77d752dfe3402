"""In a real browser: the Lever card warns when Lever sends no stage changes, and clears itself."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.steps import (
    LEVER_ACCOUNT,
    connect_lever,
    lever_card,
    link_posting,
    move_in_lever,
    open_integrations,
    sign_in,
    wait_for_status,
)
from tests.e2e.test_browser_journey import POSTING, POSTING_ID, seed_sample_test
from tests.plugins.wecp_lever.conftest import SCREEN

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def the_connection_id():
    from hub.extensions import db
    from hub.models import Connection

    return db.session.scalar(db.select(Connection.id).filter_by(plugin_key="wecp_lever"))


def test_the_card_warns_while_lever_sends_no_stage_changes_and_clears_when_it_does(page, stack, admin_account):
    """Candidate Stage Change left off in Lever: the candidate is still invited (by the
    periodic check, late); the card and the activity log say so and what to switch on; Lever's
    next stage change clears the warning without a reload by the admin."""
    from plugins.wecp_lever.flow import reconcile_postings

    title = stack.query(seed_sample_test(admin_account[0]))
    sign_in(page, stack.hub_url, *admin_account)
    connect_lever(page, stack.hub_url)
    wait_for_status(page, stack.hub_url, "Active")
    link_posting(page, stack.hub_url, title, POSTING, "Assessment")

    stack.sandbox.admin.set_toggle(LEVER_ACCOUNT, False)
    stack.sandbox.admin.add_candidates(LEVER_ACCOUNT, POSTING_ID, "applicant-new",
                                       candidates=[{"name": "Katherine Johnson", "emails": ["katherine.johnson@example.com"]}])
    move_in_lever(page, stack.sandbox.url, POSTING_ID, "Katherine Johnson", "Assessment")
    stack.enqueue(reconcile_postings, stack.query(the_connection_id))  # its 5-minute run, now
    stack.smtp.wait_for(lambda m: "katherine.johnson@example.com" in m["To"], timeout=30)

    open_integrations(page, stack.hub_url)
    card = lever_card(page)
    alert = card.locator(".alert")
    expect(alert).to_contain_text("Lever is not sending stage changes", timeout=15_000)
    expect(alert.locator(".next-step")).to_contain_text("switch “Candidate Stage Change” on")
    page.goto(f"{stack.hub_url}/integrations/wecp_lever/")
    expect(page.get_by_text("Lever sent no webhook for this move")).to_be_visible()

    open_integrations(page, stack.hub_url)
    expect(card.locator(".alert")).to_have_count(1)
    stack.sandbox.admin.set_toggle(LEVER_ACCOUNT, True)
    [other] = stack.sandbox.admin.add_candidates(
        LEVER_ACCOUNT, POSTING_ID, "applicant-new",
        candidates=[{"name": "Mary Jackson", "emails": ["mary.jackson@example.com"]}])
    stack.sandbox.admin.move(LEVER_ACCOUNT, [other], SCREEN)  # any stage: Lever sends it now
    expect(card.locator(".alert")).to_have_count(0, timeout=30_000)  # the page's own refresh
    expect(card.locator(".checklist .step").nth(1)).to_contain_text("Stage changes arrive.")
