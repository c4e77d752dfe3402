"""Fixtures for the Greenhouse plugin: an organization that issued its key, a test, and
Greenhouse's calls made with that key (HTTP Basic, the key as user name)."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import pytest

from hub.extensions import db
from tests.conftest import csrf_token, sign_in
from tests.hub.assessments.conftest import make_test

PAGE = "/settings/integrations"
BASE = "/partners/wecp_greenhouse"
#: Greenhouse's host in these tests (the sandbox's in a demo).
GREENHOUSE = "http://greenhouse.test"


def callback(number: int = 12345) -> str:
    """The ``url`` Greenhouse sends with ``send_test`` (docs/providers/greenhouse.md#send-test)."""
    return f"{GREENHOUSE}/integrations/testing_partners/take_home_tests/{number}"


def send_body(test_id, number: int = 12345, email: str = "hpotter@hogwarts.example", **changes) -> dict:
    body = {
        "partner_test_id": str(test_id),
        "candidate": {"first_name": "Harry", "last_name": "Potter", "preferred_name": "",
                      "resume_url": None, "phone_number": "123-456-7890", "email": email,
                      "greenhouse_profile_url": f"{GREENHOUSE}/people/17681532?application_id=26234709"},
        "sent_by": "recruiter@hogwarts.example",
        "url": callback(number),
    }
    body.update(changes)
    return body


def basic(key: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@dataclass
class Customer:
    admin: object
    key: str
    test: object
    browser: object

    @property
    def auth(self) -> dict:
        return basic(self.key)


def issue_key(app, admin):
    """Connect as the admin: the key, read from the page that shows it once."""
    browser = app.test_client()
    sign_in(browser, admin.email)
    answer = browser.post("/integrations/wecp_greenhouse/connect", data={"csrf_token": csrf_token(browser, PAGE)})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    key = re.search(r'id="partner-key" class="secret" readonly value="([^"]+)"', answer.get_data(as_text=True)).group(1)
    return browser, key, answer.get_data(as_text=True)


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": ["plugins.wecp_greenhouse"], "GREENHOUSE_ENV": "local",
            "GREENHOUSE_SANDBOX_URL": GREENHOUSE, "HUB_PARTNER_CALLS_PER_MINUTE": 1000,
            "HUB_RETRY_INTERVALS": "1,2"}


def _customer(app, make_user, org: str) -> Customer:
    admin = make_user(org=org)
    browser, key, _ = issue_key(app, admin)
    test = make_test(admin.organization_id, title=f"{org} backend screen")
    db.session.commit()
    return Customer(admin, key, test, browser)


@pytest.fixture
def hogwarts(app, make_user) -> Customer:
    return _customer(app, make_user, "Hogwarts")


@pytest.fixture
def durmstrang(app, make_user) -> Customer:
    return _customer(app, make_user, "Durmstrang")
