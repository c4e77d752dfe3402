"""In a real browser, as a candidate on a phone in another time zone: deadlines in local time, a
countdown while the test runs, questions named by their text, and Submit that asks first."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.steps import applied_and_invited, connect_and_link
from tests.e2e.test_browser_journey import POSTING, POSTING_ID

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def test_a_candidate_sees_local_times_a_countdown_and_confirms_the_one_submission(page, browser, stack, admin_account):
    connect_and_link(page, stack, admin_account, POSTING)
    _, url = applied_and_invited(page, stack, POSTING_ID, "Mary Jackson", "mary.jackson@example.com")

    context = browser.new_context(viewport={"width": 390, "height": 844}, timezone_id="Asia/Kolkata")
    errors = []
    candidate = context.new_page()
    candidate.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        candidate.goto(url)
        deadline = candidate.locator("time.local")
        expect(deadline).to_have_attribute("data-local", "1")  # rewritten by the browser
        expect(deadline).to_contain_text("GMT+5:30")  # the candidate's zone, not UTC
        candidate.get_by_role("button", name="Start the test").click()

        timer = candidate.get_by_role("timer")
        expect(timer).to_contain_text(re.compile(r"Time left: 1[45]:\d\d"))  # a 15-minute test
        first = timer.inner_text()
        expect(timer).not_to_have_text(first, timeout=3000)  # it counts down
        # Each question's group is named by its text, not only "Question 1 of 5".
        group = candidate.get_by_role("group", name=re.compile(r"Question 1 of 5 What does len"))
        group.get_by_label("3", exact=True).check()
        assert candidate.evaluate(NO_SIDEWAYS_SCROLL)
        candidate.screenshot(path=str(stack.artifacts / "questions-390.png"), full_page=True)

        asked = []

        def dismiss(dialog):
            asked.append(dialog.message)
            dialog.dismiss()
        candidate.once("dialog", dismiss)
        candidate.get_by_role("button", name="Submit answers").click()
        assert asked == ["4 of 5 questions are unanswered. Submit your answers now? You can submit only once."]
        expect(timer).to_be_visible()  # still on the test: nothing was sent

        candidate.once("dialog", lambda dialog: dialog.accept())
        candidate.get_by_role("button", name="Submit answers").click()
        expect(candidate.get_by_role("heading", name=re.compile(r"^Thank you"))).to_be_visible()
        # The link opened again says when, in the candidate's zone too (#40, 10: it said UTC only).
        candidate.goto(url)
        submitted = candidate.locator("time.local")
        expect(submitted).to_have_attribute("data-local", "1")
        expect(submitted).to_contain_text("GMT+5:30")
        assert errors == []
    finally:
        context.close()


def serious_violations(page) -> list:
    """axe-core's serious and critical findings on the page (the bundled axe.min.js)."""
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page).response["violations"]
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in violations if v["impact"] in ("serious", "critical")]


def test_no_serious_accessibility_violation_on_the_candidate_pages_the_report_and_the_integrations_page(
        page, browser, stack, admin_account):
    from tests.e2e.steps import LEVER_ACCOUNT
    from tests.e2e.test_browser_journey import ANSWERS
    from tests.stack import wait_until

    connect_and_link(page, stack, admin_account, POSTING)
    page.goto(f"{stack.hub_url}/settings/integrations")
    assert serious_violations(page) == []
    opportunity, url = applied_and_invited(page, stack, POSTING_ID, "Dorothy Vaughan", "dorothy.vaughan@example.com")

    context = browser.new_context(viewport={"width": 390, "height": 844})
    candidate = context.new_page()
    try:
        candidate.goto(url)
        assert serious_violations(candidate) == []  # the intro
        candidate.get_by_role("button", name="Start the test").click()
        expect(candidate.get_by_role("timer")).to_be_visible()
        assert serious_violations(candidate) == []  # the questions
        for question, options in ANSWERS.items():
            box = candidate.locator("fieldset.question").filter(has_text=question)
            for option in options:
                box.get_by_label(option, exact=True).check()
        candidate.once("dialog", lambda dialog: dialog.accept())
        candidate.get_by_role("button", name="Submit answers").click()
        expect(candidate.get_by_role("heading", name=re.compile(r"^Thank you"))).to_be_visible()
        assert serious_violations(candidate) == []  # the thank-you page
    finally:
        context.close()

    note = wait_until(lambda: next((n for n in stack.sandbox.admin.notes(LEVER_ACCOUNT)
                                    if n["opportunity_id"] == opportunity), None), 30, 0.2, "the result note")
    report = re.search(r"View a detailed report on WeCP: (\S+)", note["value"]).group(1)
    page.goto(report)
    expect(page.get_by_role("heading").first).to_be_visible()
    assert serious_violations(page) == []


def test_the_demo_s_next_steps_followed_by_hand_end_with_the_email_and_the_note(page, stack, admin_account):
    """The demo's own words (sandboxes/lever/standin.py next_steps), step by step in a browser:
    a candidate who applies after the link is invited; the score lands as a note."""
    from sandboxes.lever.standin import next_steps
    from tests.e2e.steps import (
        LEVER_ACCOUNT,
        connect_lever,
        lever_card,
        link_posting,
        move_in_lever,
        open_integrations,
        seed_sample_test,
        sign_in,
        take_test,
        wait_for_status,
    )
    from tests.e2e.test_browser_journey import ANSWERS
    from tests.stack import wait_until

    def first_event_ticked() -> bool:
        open_integrations(page, stack.hub_url)
        step = lever_card(page).locator("li.step", has_text="Lever sends stage changes")
        return "done" in (step.get_attribute("class") or "").split()

    steps = next_steps(stack.hub_url, stack.sandbox.url)
    assert "Candidate Stage Change" in steps[1] and "New candidate applies" in steps[3]
    # The demo's Lever starts with Candidate Stage Change off (``--stage-change-off``).
    stack.sandbox.admin.set_toggle(LEVER_ACCOUNT, False)
    title = stack.query(seed_sample_test(admin_account[0]))
    sign_in(page, stack.hub_url, *admin_account)
    connect_lever(page, stack.hub_url)  # step 1
    wait_for_status(page, stack.hub_url, "Active")
    # Step 2: the sandbox's Webhooks & deliveries page, "Turn on".
    page.goto(f"{stack.sandbox.url}/accounts/{LEVER_ACCOUNT}")
    page.get_by_role("link", name="Webhooks & deliveries").click()
    page.locator("form.toggle", has_text="Candidate Stage Change").get_by_role("button", name="Turn on").click()
    expect(page.locator("form.toggle", has_text="Candidate Stage Change")).to_contain_text("ON")
    assert not first_event_ticked()
    link_posting(page, stack.hub_url, title, POSTING, "Assessment")  # step 3
    # Step 4: the pipeline's "New candidate applies", then move them to Assessment.
    page.goto(f"{stack.sandbox.url}/accounts/acme/postings/{POSTING_ID}")
    form = page.locator("form.apply")
    form.get_by_label("Name").fill("Annie Jump Cannon")
    form.get_by_label("Email").fill("annie.cannon@example.com")
    form.get_by_role("button", name="New candidate applies").click()
    expect(page.get_by_text("Annie Jump Cannon applied.")).to_be_visible()
    move_in_lever(page, stack.sandbox.url, POSTING_ID, "Annie Jump Cannon", "Assessment")
    # The hub confirms the first stage change: the card's checklist ticks it.
    wait_until(first_event_ticked, 30, 0.5, "the checklist's tick for the first stage change")
    # Step 5: the invitation arrives; the candidate takes the test; the note is in Lever.
    email = stack.smtp.wait_for(lambda m: "annie.cannon@example.com" in m["To"], timeout=30)
    url = re.search(r"http://\S+/t/\S+", email.get_body(("plain",)).get_content()).group(0)
    take_test(page, url, ANSWERS)
    page.goto(f"{stack.sandbox.url}/accounts/acme/postings/{POSTING_ID}")
    page.get_by_role("link", name="Annie Jump Cannon").click()
    candidate_page = page.url

    def noted():
        page.goto(candidate_page)
        return page.get_by_text("View a detailed report on WeCP").count() > 0
    wait_until(noted, 30, 0.5, "the result note on the candidate's Lever page")
