"""The security suite's world: two organizations with data, signed-in browsers, the Lever sandbox."""
from __future__ import annotations

import json
import pathlib
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from hub.assessments import services
from hub.auth import create_user
from hub.extensions import db
from hub.inbox import WebhookDelivery
from hub.models import ApiToken, User
from plugins.wecp_lever.models import Note, PostingLink, Tag
from sandboxes.lever.testing import start_sandbox
from tests.conftest import csrf_token, sign_in
from tests.hub.assessments.conftest import SAMPLE
from tests.workers import make_connection

CLIENT_ID, CLIENT_SECRET = "wecp-hub-test", "test-client-secret"
CALLBACK_PATH = "/integrations/wecp_lever/connect/callback"
PAGE = "/settings/integrations"
LEVER_FIXTURES = pathlib.Path(__file__).parents[1] / "plugins" / "wecp_lever" / "fixtures" / "lever"


def lever_fixture(event: str) -> dict:
    return json.loads((LEVER_FIXTURES / f"{event}.json").read_text())


@dataclass
class Org:
    """One organization as the tests see it: its users and one of each kind of tenant row."""

    name: str
    admin: User
    member: User
    test_id: int
    invitation_id: str
    invitation_token: str
    result_id: str
    report_token: str
    connection_id: str
    endpoint_id: str
    webhook_secret: str
    delivery_id: int
    link_id: int
    note_id: int
    tag_id: int
    token_id: int
    email_id: str
    marker: str  # text that appears in this organization's data and nowhere else


def make_org(name: str) -> Org:
    """An organization with an admin, a member, a test, a completed invitation with its report,
    a Lever connection with a webhook secret and one failed delivery."""
    slug = name.lower().replace(" ", "-")
    marker = f"Secret-of-{slug}"
    admin = create_user(name, f"admin@{slug}.example", "correct horse battery", "admin")
    member = create_user(name, f"member@{slug}.example", "correct horse battery", "member")
    db.session.commit()
    test = services.save_test(admin.organization_id, {**SAMPLE, "title": f"{marker} test"})
    db.session.commit()
    invitation, _ = services.create_invitation(
        test.id, name=f"{marker} candidate", email=f"cand@{slug}.example", source="wecp_lever",
        source_ref="opp-1", idempotency_key=f"sec:{slug}")
    token = invitation.token
    services.start_invitation(token)
    result = services.complete_invitation(token, {})
    connection = make_connection(plugin_key="wecp_lever", provider="lever", org_name=name,
                                 webhook_secret=f"whsec-{slug}-0123456789abcdef",
                                 external_account_name=f"{marker}.lever.example")
    delivery = WebhookDelivery(connection_id=connection.id, plugin_key="wecp_lever", source="lever",
                               event="candidateStageChange", dedupe_key=f"dedupe-{slug}",
                               payload={"data": {}}, status="failed", error=f"{marker}: boom")
    db.session.add(delivery)
    link = PostingLink(organization_id=admin.organization_id, test_id=test.id, posting_id="posting-1",
                       posting_text=f"{marker} posting", stage_id="stage-1", stage_text="Assessment")
    note = Note(organization_id=admin.organization_id, connection_id=connection.id,
                key=f"result:{result.id}", result_id=result.id, opportunity_id="opp-1", status="failed")
    tag = Tag(organization_id=admin.organization_id, connection_id=connection.id, key=f"result:{result.id}",
              opportunity_id="opp-1", tags=["WeCP: passed"], status="failed", attempts=1)
    api, _ = ApiToken.issue(admin, f"{marker} token")
    db.session.add_all([link, note, tag, api])
    db.session.commit()
    email_id = services.invitation_email(invitation.id).id
    return Org(name=name, admin=admin, member=member, test_id=test.id, invitation_id=invitation.id,
               invitation_token=token, result_id=result.id, report_token=result.report_token,
               connection_id=connection.id, endpoint_id=connection.endpoint_id,
               webhook_secret=f"whsec-{slug}-0123456789abcdef", delivery_id=delivery.id,
               link_id=link.id, note_id=note.id, tag_id=tag.id, token_id=api.id, email_id=email_id, marker=marker)


@pytest.fixture
def org_a(app) -> Org:
    return make_org("Org A")


@pytest.fixture
def org_b(app) -> Org:
    return make_org("Org B")


@pytest.fixture
def browser(app):
    """Make a new browser, signed in as ``user`` (or anonymous)."""
    def make(user: User | None = None):
        client = app.test_client()
        if user is not None:
            sign_in(client, user.email)
        return client
    return make


def api_token(user: User) -> str:
    token, plaintext = ApiToken.issue(user, "security-suite")
    db.session.add(token)
    db.session.commit()
    return plaintext


def csrf_of(client, path: str = PAGE) -> str:
    return csrf_token(client, path)


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


# --- the Lever sandbox ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sandbox():
    server = start_sandbox()
    yield server
    server.stop()


@pytest.fixture
def lever(sandbox):
    """The sandbox reset to its seed, with the hub registered as an OAuth client."""
    sandbox.admin.reset()
    sandbox.admin.add_client(CLIENT_ID, CLIENT_SECRET, ["http://hub.test" + CALLBACK_PATH])
    return sandbox


def start_connect(client) -> dict:
    """Press Connect; the query of the authorize URL the browser is sent to."""
    response = client.post("/integrations/wecp_lever/connect", data={"csrf_token": csrf_of(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def consent(sandbox, query: dict, decision: str = "accept", **signed_in_as) -> dict:
    """Sign in to the sandbox and answer its consent page, like a browser; the callback query."""
    extra = {k: query[k] for k in ("code_challenge", "code_challenge_method") if k in query}
    answer = sandbox.authorize(query["client_id"], query["redirect_uri"], query["scope"],
                               audience=query["audience"], state=query["state"],
                               decision=decision, extra=extra, **signed_in_as)
    return {k: v for k, v in answer.items() if not k.startswith("_")}


def finish(client, answer: dict):
    return client.get(CALLBACK_PATH, query_string=answer)
