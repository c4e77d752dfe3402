"""In a real browser: the Lever card warns when Lever sends no stage changes, and clears itself."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.steps import (
    LEVER_ACCOUNT,
    applied_and_invited,
    connect_and_link,
    connect_lever,
    lever_card,
    move_in_lever,
    open_integrations,
    sign_in,
    take_test,
    wait_for_status,
)
from tests.e2e.test_browser_journey import ANSWERS, POSTING, POSTING_ID
from tests.plugins.wecp_lever.conftest import SCREEN
from tests.stack import wait_until

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

    connect_and_link(page, stack, admin_account, POSTING)

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


def test_a_lever_write_refused_for_good_shows_on_the_card_with_its_reason_and_a_retry(page, stack, admin_account):
    """Lever answers the result note with a 4xx: it fails at once (retrying the same request
    cannot help), the card says why and links to Retry; once the cause is fixed, Retry posts
    the note once and the card clears."""
    connect_and_link(page, stack, admin_account, POSTING)
    opportunity, url = applied_and_invited(page, stack, POSTING_ID, "Dorothy Vaughan", "dorothy.vaughan@example.com")
    stack.sandbox.admin.add_fault(route="/notes$", error_rate=1.0, status=400)
    take_test(page, url, ANSWERS)

    open_integrations(page, stack.hub_url)
    alert = lever_card(page).locator(".alert-error")
    expect(alert).to_contain_text("1 write to Lever failed", timeout=30_000)
    expect(alert).to_contain_text("Lever note: 1")
    expect(alert).to_contain_text("400")
    stack.sandbox.admin.clear_faults()
    alert.get_by_role("link", name=re.compile("Work needing attention")).click()
    section = page.locator("section.panel").filter(has=page.get_by_role("heading", name="Lever note"))
    section.get_by_role("button", name="Retry").click()

    def the_note():
        return [n for n in stack.sandbox.admin.notes(LEVER_ACCOUNT) if n["opportunity_id"] == opportunity]
    wait_until(the_note, 30, 0.2, "the note in Lever after Retry")
    open_integrations(page, stack.hub_url)
    expect(lever_card(page).locator(".alert-error")).to_have_count(0, timeout=15_000)
    assert len(the_note()) == 1


def test_the_pass_stage_is_picked_from_lever_s_list_and_a_stage_lever_no_longer_has_is_refused(
        page, stack, admin_account):
    """The setting is a list of Lever's stages; a stage gone from Lever by the time Save is
    clicked (simulated by changing the option under the page) is refused on save, not by five
    failed moves later."""
    sign_in(page, stack.hub_url, *admin_account)
    connect_lever(page, stack.hub_url)
    wait_for_status(page, stack.hub_url, "Active")
    page.goto(f"{stack.hub_url}/integrations/wecp_lever/")
    stage = page.get_by_label("Move candidates who pass")
    expect(stage.locator("option", has_text="Offer")).to_have_count(1)
    stage.select_option(label="Offer")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash-success")).to_contain_text("Settings saved.")
    expect(page.get_by_label("Move candidates who pass")).to_have_value("offer")

    page.get_by_label("Move candidates who pass").evaluate(
        "select => { select.options[select.selectedIndex].value = 'stage-deleted-in-lever'; }")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash-error")).to_contain_text("is not one of Lever's stages")
    expect(page.get_by_label("Move candidates who pass")).to_have_value("offer")  # unchanged
