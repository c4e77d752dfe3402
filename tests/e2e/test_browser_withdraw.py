"""In a real browser: a candidate archived in Lever before starting finds their link withdrawn,
kindly, on a phone; the recruiter's activity log says why."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.steps import applied_and_invited, connect_and_link
from tests.e2e.test_browser_journey import POSTING, POSTING_ID
from tests.stack import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def invitation_status(opportunity_id: str):
    """For ``stack.query``: the status of the candidate's invitation."""
    def status():
        from hub.assessments.models import Invitation
        from hub.extensions import db

        return db.session.scalar(db.select(Invitation.status).filter_by(source_ref=opportunity_id))
    return status


def test_a_candidate_archived_before_starting_finds_a_kind_message_at_390_px(page, stack, admin_account):
    connect_and_link(page, stack, admin_account, POSTING)
    opportunity, url = applied_and_invited(page, stack, POSTING_ID, "Katherine Johnson",
                                           "katherine.johnson@example.com")
    # The email on a phone: who is asking and for which job, the button in reach, no sideways scroll.
    email = stack.smtp.wait_for(lambda m: "katherine.johnson@example.com" in m["To"], timeout=5)
    assert email["Subject"].startswith("Acme") and f"for {POSTING}" in email["Subject"]
    page.set_viewport_size({"width": 390, "height": 844})
    page.set_content(email.get_body(("html",)).get_content())
    expect(page.get_by_text(f"as part of your application for {POSTING}")).to_be_visible()
    expect(page.get_by_role("link", name="Open the test")).to_be_in_viewport()
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    page.screenshot(path=str(stack.artifacts / "invitation-email-390.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    # The recruiter archives the candidate in Lever; Lever's archive webhook reaches the hub and
    # a worker withdraws the invitation.
    page.goto(f"{stack.sandbox.url}/candidates/{opportunity}")
    page.get_by_role("button", name="Archive").click()
    expect(page.get_by_text("Candidate archived.")).to_be_visible()
    wait_until(lambda: stack.query(invitation_status(opportunity)) == "cancelled", 30, 0.2,
               "the invitation withdrawn by the archive webhook")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(url)
    expect(page.get_by_role("heading", name="This invitation was withdrawn")).to_be_visible()
    expect(page.get_by_text("there is nothing for you to do here")).to_be_visible()
    expect(page.get_by_role("button", name="Start the test")).to_have_count(0)
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    page.screenshot(path=str(stack.artifacts / "withdrawn-390.png"), full_page=True)
    # The page is answered 410 Gone on purpose (the link is no longer usable); Chromium logs any
    # 4xx of a page as a console error, which is this test's expected answer, not a fault.
    expected = [p for p in page.problems if "status of 410" in p and url in p]
    assert len(expected) == 1
    page.problems.remove(expected[0])

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{stack.hub_url}/integrations/wecp_lever/")
    line = page.locator("table.activity tbody tr").filter(has_text="Withdrawn")
    expect(line).to_have_count(1)
    expect(line).to_contain_text("Katherine Johnson")
    expect(line).to_contain_text("the candidate was archived in Lever")
