"""In a real browser: the Lever activity log a recruiter reads, on a laptop and on a phone."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.steps import LEVER_ACCOUNT, applied_and_invited, connect_and_link, link_posting, take_test
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
    # The outbox's preview fits a phone (it was 510 px wide at 390 and hid the email's end: #40, 10).
    page.goto(f"{stack.hub_url}/dev/outbox")
    preview = page.locator("iframe.email-preview").first
    expect(preview).to_be_visible()
    assert preview.bounding_box()["width"] <= 390 and page.evaluate(NO_SIDEWAYS_SCROLL)
    # The From the candidate sees, as the settings page promises it (#40, 12).
    expect(page.locator("article.email").first).to_contain_text("From Acme Hiring via WeCP <")
    page.screenshot(path=str(stack.artifacts / "outbox-390.png"), full_page=True)
    page.goto(f"{stack.hub_url}/integrations/wecp_lever/")

    page.get_by_label("Status").select_option(label="Failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("Nothing matches these filters.")).to_be_visible()


FRONTEND_ID, FRONTEND = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0fa", "Frontend Engineer"


def test_one_test_linked_to_two_postings_shows_and_filters_each_candidate_s_posting(page, stack, admin_account):
    """Issue #40, 1: every row read the last linked posting, the Posting filter returned the same
    rows for either, and the Unlink preview counted both postings' candidates."""
    title = connect_and_link(page, stack, admin_account, POSTING)
    link_posting(page, stack.hub_url, title, FRONTEND, "Assessment")
    applied_and_invited(page, stack, POSTING_ID, "Dorothy Vaughan", "dorothy.vaughan@example.com")
    applied_and_invited(page, stack, FRONTEND_ID, "Mary Jackson", "mary.jackson@example.com")

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{stack.hub_url}/integrations/wecp_lever/")
    rows = page.locator("table.activity tbody tr")

    def posting_of(name):
        invited = rows.filter(has_text=name).filter(has_text="Invitation")
        return invited.locator('td[data-label="Posting · stage"]').inner_text()
    assert posting_of("Dorothy Vaughan") == f"{POSTING} · Assessment"
    assert posting_of("Mary Jackson") == f"{FRONTEND} · Assessment"
    page.screenshot(path=str(stack.artifacts / "activity-two-postings-1280.png"), full_page=True)

    for posting, shown, hidden in ((POSTING, "Dorothy Vaughan", "Mary Jackson"),
                                   (FRONTEND, "Mary Jackson", "Dorothy Vaughan")):
        page.get_by_label("Posting").select_option(label=posting)
        page.get_by_role("button", name="Filter").click()
        expect(rows.filter(has_text=shown)).not_to_have_count(0)
        expect(rows.filter(has_text=hidden)).to_have_count(0)

    # Unlink Frontend: the preview counts its own candidate only; afterwards Mary still reads Frontend.
    page.goto(f"{stack.hub_url}/tests")
    page.get_by_role("link", name=title).click()
    page.locator("#lever-links tr").filter(has_text=FRONTEND).get_by_role("link", name="Unlink…").click()
    expect(page.locator("#in-flight")).to_have_text(
        f"1 candidate invited to this test from “{FRONTEND}” has not finished yet.")
    page.get_by_role("button", name="Unlink").click()
    page.goto(f"{stack.hub_url}/integrations/wecp_lever/")
    assert posting_of("Mary Jackson") == f"{FRONTEND} · Assessment"
    assert posting_of("Dorothy Vaughan") == f"{POSTING} · Assessment"
