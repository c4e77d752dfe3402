"""In a real browser: the Lever activity log a recruiter reads, on a laptop and on a phone."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.steps import LEVER_ACCOUNT, applied_and_invited, connect_and_link, take_test
from tests.e2e.test_browser_journey import ANSWERS, POSTING, POSTING_ID
from tests.stack import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def test_the_activity_log_reads_well_at_1280_and_at_390_px(page, stack, admin_account):
    connect_and_link(page, stack, admin_account, POSTING)
    opportunity, url = applied_and_invited(page, stack, POSTING_ID, "Annie Easley", "annie.easley@example.com")
    take_test(page, url, ANSWERS)

    wait_until(lambda: [n for n in stack.sandbox.admin.notes(LEVER_ACCOUNT) if n["opportunity_id"] == opportunity],
               30, 0.2, "the worker's result note in Lever")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{stack.hub_url}/integrations/wecp_lever/")
    rows = page.locator("table.activity tbody tr")
    expect(rows.filter(has_text="Result note")).to_have_count(1)
    note = rows.filter(has_text="Result note")
    expect(note.get_by_role("link", name="Annie Easley")).to_have_attribute(
        "href", f"{stack.sandbox.url}/candidates/{opportunity}")
    expect(note).to_contain_text(f"{POSTING} · Assessment")
    expect(note.get_by_role("link", name="Report")).to_be_visible()
    expect(rows.filter(has_text="Invitation")).to_contain_text("Email: sent")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    page.screenshot(path=str(stack.artifacts / "activity-1280.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    cell = rows.first.locator('td[data-label="Candidate"]')
    assert cell.evaluate("td => getComputedStyle(td).display") == "block"  # one card per line
    assert cell.evaluate("td => getComputedStyle(td, '::before').content") == '"Candidate: "'
    expect(page.locator("table.activity thead")).not_to_be_in_viewport()
    page.screenshot(path=str(stack.artifacts / "activity-390.png"), full_page=True)

    page.get_by_label("Status").select_option(label="Failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("Nothing matches these filters.")).to_be_visible()
