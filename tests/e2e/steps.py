"""Steps of the browser journeys (Playwright), shared by every end-to-end test with a page."""
from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

LEVER_ACCOUNT = "acme"
LEVER_ADMIN = ("olivia@acme.example", "sandbox")
STAGE_CHANGE_HINT = re.compile(r"Candidate Stage Change.{0,3} on")
#: Every answer of the demo's sample test right (hub/assessments/demo.py).
SAMPLE_ANSWERS = {
    "What does len([1, 2, 3]) return?": ["3"],
    "Which of these types are mutable?": ["list", "dict"],
    "Which keyword starts a function definition?": ["def"],
    "What is the value of bool([])?": ["False"],
    "Which of these are Python keywords for handling exceptions?": ["try", "except"],
}


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
    lever_card(page).get_by_role("link", name="Revoke…").click()
    # The confirmation says what Revoke does and what is in flight, then Revoke for real.
    expect(page.locator("h1")).to_have_text("Revoke Lever?")
    expect(page.locator("main")).to_contain_text("Authorized Apps")
    page.get_by_role("button", name="Revoke Lever").click()
    expect(page.locator(".flash").first).to_contain_text("Lever is disconnected")


def revoke_in_lever(page: Page, sandbox_url: str, account: str = LEVER_ACCOUNT) -> None:
    """In the sandbox (signed in from the consent step): Authorized Apps › Revoke access."""
    page.goto(f"{sandbox_url}/accounts/{account}")
    page.get_by_role("link", name="Authorized Apps").click()
    row = page.get_by_role("row").filter(has_text="WeCP")
    row.get_by_role("button", name="Revoke access").click()
    expect(page.get_by_text("No app is authorized for this account.")).to_be_visible()


def link_posting(page: Page, hub_url: str, test_title: str, posting: str, stage: str) -> None:
    """Tests › the test › Link job posting from Lever › pick the posting and stage › Link."""
    page.goto(f"{hub_url}/tests")
    page.get_by_role("link", name=test_title).click()
    page.get_by_role("link", name="Link job posting from Lever").click()
    page.get_by_role("radio", name=re.compile(re.escape(posting))).check()
    page.get_by_label("Stage").select_option(label=stage)
    page.get_by_role("button", name="Link").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Linked to “{posting}”")
    expect(page.locator("#lever-links")).to_contain_text(stage)


def move_in_lever(page: Page, sandbox_url: str, posting_id: str, candidate: str, stage: str,
                  account: str = LEVER_ACCOUNT) -> None:
    """In the sandbox's pipeline of the posting: the candidate's card › stage › Move."""
    page.goto(f"{sandbox_url}/accounts/{account}/postings/{posting_id}")
    page.get_by_label(f"Stage for {candidate}").select_option(label=stage)
    card = page.locator("article.card").filter(has_text=candidate)
    card.get_by_role("button", name="Move").click()
    column = page.locator("section.column").filter(
        has=page.get_by_role("heading", name=re.compile(rf"^{re.escape(stage)} \d+$")))
    expect(column).to_contain_text(candidate)


def take_test(page: Page, url: str, answers: dict[str, list[str]]) -> None:
    """As the candidate: open the emailed link, Start, tick the answers, Submit."""
    page.goto(url)
    page.get_by_role("button", name="Start the test").click()
    for question, options in answers.items():
        box = page.locator("fieldset.question").filter(has_text=question)
        for option in options:
            box.get_by_label(option, exact=True).check()
    asked = []

    def confirm(dialog):
        asked.append(dialog.message)
        dialog.accept()
    page.once("dialog", confirm)  # the page asks before the one submission
    page.get_by_role("button", name="Submit answers").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Thank you"))).to_be_visible()
    assert len(asked) == 1 and "You can submit only once" in asked[0]


def seed_sample_test(email: str):
    """For ``stack.query``: the demo's sample test in the organization of ``email``; its title."""
    def seed():
        from hub.assessments.demo import SAMPLE_TITLE, seed_sample_test
        from hub.extensions import db
        from hub.models import User

        user = db.session.scalar(db.select(User).filter_by(email=email))
        seed_sample_test(user.organization_id)
        db.session.commit()
        return SAMPLE_TITLE
    return seed


def connect_and_link(page: Page, stack, admin_account, posting: str, stage: str = "Assessment") -> str:
    """The admin signs in, connects Lever, and links the sample test to ``posting``; its title."""
    title = stack.query(seed_sample_test(admin_account[0]))
    sign_in(page, stack.hub_url, *admin_account)
    connect_lever(page, stack.hub_url)
    wait_for_status(page, stack.hub_url, "Active")
    link_posting(page, stack.hub_url, title, posting, stage)
    return title


def applied_and_invited(page: Page, stack, posting_id: str, name: str, email: str,
                        stage: str = "Assessment") -> tuple[str, str]:
    """A candidate applies to the posting, a recruiter moves them into the linked stage in
    Lever, and the invitation email arrives: (their opportunity id, the test's link)."""
    [opportunity] = stack.sandbox.admin.add_candidates(
        LEVER_ACCOUNT, posting_id, "applicant-new", candidates=[{"name": name, "emails": [email]}])
    move_in_lever(page, stack.sandbox.url, posting_id, name, stage)
    invitation = stack.smtp.wait_for(lambda m: email in m["To"], timeout=30)
    return opportunity, re.search(r"http://\S+/t/\S+", invitation.get_body(("plain",)).get_content()).group(0)
