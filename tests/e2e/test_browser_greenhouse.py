"""The Greenhouse journey in a real Chromium, against the Greenhouse sandbox: WeCP issues a key,
Greenhouse Support enters it, a recruiter picks the WeCP test for the take-home stage and clicks
Send Test, the candidate gets the email and takes the test, and Greenhouse shows the result."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.steps import SAMPLE_ANSWERS as ANSWERS
from tests.e2e.steps import open_integrations, seed_sample_test, sign_in, take_test
from tests.stack import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CANDIDATE, CANDIDATE_EMAIL = "Katherine Johnson", "katherine.johnson@example.com"


def test_a_recruiter_sends_a_wecp_test_from_greenhouse_and_sees_the_result_there(page, stack, admin_account):
    greenhouse = stack.sandboxes["wecp_greenhouse"]
    title = stack.query(seed_sample_test(admin_account[0]))
    sign_in(page, stack.hub_url, *admin_account)

    # The admin issues the key: shown once, with the four addresses Greenhouse needs.
    open_integrations(page, stack.hub_url)
    card = page.locator("#connection-wecp_greenhouse-greenhouse")
    expect(card.locator(".badge")).to_have_text("Not connected")
    card.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("heading", name="Key for Greenhouse")).to_be_visible()
    key = page.locator("#partner-key").input_value()
    urls = dict(zip(page.locator("dl.endpoints dt").all_inner_texts(),
                    page.locator("dl.endpoints dd").all_inner_texts(), strict=True))
    assert sorted(urls) == ["list_tests", "response_error", "send_test", "test_status"]
    assert all(url.startswith(stack.hub_url + "/partners/wecp_greenhouse/") for url in urls.values())
    expect(page.locator("main")).to_contain_text("SendSafely")
    page.get_by_role("link", name="I have copied it").click()
    expect(card.locator(".badge")).to_have_text("Active")
    expect(card).to_contain_text("Greenhouse needs these addresses with the key")

    # Harvest, optional: a Site Admin authorizes WeCP in Greenhouse, and the admin picks where
    # candidates who pass move, from Greenhouse's own jobs and stages.
    harvest = page.locator("#connection-wecp_greenhouse-harvest")
    harvest.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("heading", name="Authorize WeCP to use Harvest")).to_be_visible()
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_text("Greenhouse Harvest is connected")).to_be_visible()
    expect(harvest.locator(".badge")).to_have_text("Active")
    page.get_by_role("link", name="Activity and settings").first.click()
    page.get_by_role("link", name="Change…").click()
    page.get_by_label("Backend Engineer").select_option(label="Onsite")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#harvest")).to_contain_text("Onsite")

    # Greenhouse Support enters the key and the addresses (the sandbox's Support form).
    page.goto(f"{greenhouse.url}/support")
    page.get_by_label("Partner API key").fill(key)
    for call, url in urls.items():
        page.get_by_label(f"{call} URL").fill(url)
    page.get_by_role("button", name="Save partner settings").click()
    expect(page.get_by_text(re.compile(r"WeCP is set up"))).to_be_visible()

    # The recruiter picks the WeCP test for the job's take-home stage (Greenhouse calls list_tests).
    page.get_by_role("link", name="Backend Engineer").click()
    page.get_by_label("Take-home test (WeCP)").select_option(label=title)
    page.get_by_role("button", name="Use this test").click()
    expect(page.locator("main")).to_contain_text(f"Take-home test: {title} (WeCP)")

    # A candidate is added, moved to the take-home stage, and sent the test.
    page.get_by_label("First name").fill("Katherine")
    page.get_by_label("Last name").fill("Johnson")
    page.get_by_label("Email").fill(CANDIDATE_EMAIL)
    page.get_by_role("button", name="Add candidate").click()
    page.get_by_label(f"Stage of {CANDIDATE}").select_option(label="Take Home Test")
    page.locator("tr").filter(has_text=CANDIDATE).get_by_role("button", name="Move").click()
    page.get_by_role("button", name=f"Send Test to {CANDIDATE}").click()
    expect(page.get_by_role("status")).to_have_text("Test sent.")

    # WeCP emails the candidate, who takes the test.
    invitation = stack.smtp.wait_for(lambda m: CANDIDATE_EMAIL in m["To"], timeout=30)
    body = invitation.get_body(("plain",)).get_content()
    assert title in invitation["Subject"] or title in body
    take_test(page, re.search(r"http://\S+/t/\S+", body).group(0), ANSWERS)

    # WeCP tells Greenhouse (PATCH), Greenhouse reads test_status: the candidate's page shows it.
    def complete():
        tests = [t for t in greenhouse.admin.take_home_tests() if t["status"] == "complete"]
        return tests or None
    [done] = wait_until(complete, 30, 0.2, "the result in Greenhouse")
    assert done["score"] == 100 and done["patches"] == 1
    page.goto(f"{greenhouse.url}/jobs/{greenhouse.admin.job_id('Backend Engineer')}")
    page.get_by_role("link", name=CANDIDATE).click()
    expect(page.locator(".test-status")).to_have_text("complete")
    expect(page.locator(".test-score")).to_have_text("100")
    # With Harvest: the score as a note on the candidate, and the pass moved them to Onsite.
    wait_until(lambda: greenhouse.admin.harvest()["moves"] or None, 30, 0.2, "the move in Greenhouse")
    page.reload()
    expect(page.locator(".note")).to_contain_text("View a detailed report on WeCP")
    expect(page.locator(".application-stage")).to_contain_text("Backend Engineer: Onsite")
    page.get_by_role("link", name="View the report on WeCP").click()
    expect(page.get_by_text(title).first).to_be_visible()
    assert len(stack.smtp.messages) == 1  # one invitation

    # The admin's card ticks every step, and the activity log names the candidate.
    open_integrations(page, stack.hub_url)
    for step in ("Greenhouse listed your tests", "First test sent from Greenhouse", "First result sent to Greenhouse"):
        expect(card.locator("li.step.done").filter(has_text=step)).to_be_visible()
    for step in ("Stages picked for candidates who pass", "First note or move written in Greenhouse"):
        expect(harvest.locator("li.step.done").filter(has_text=step)).to_be_visible()
    page.goto(f"{stack.hub_url}/settings/integrations/wecp_greenhouse/activity")
    expect(page.locator("main")).to_contain_text("result sent to Greenhouse")
    expect(page.locator("main")).to_contain_text(CANDIDATE)
