"""The security suite's world: two organizations with data, signed-in browsers, the Lever sandbox.

The world follows the loaded plugins: each gets a connection in each organization (its own
``tests/plugins/<key>/security.py`` may make it, and adds its rows), and the hub's routes are
called with the connection and a failed delivery of the first loaded plugin. Tests of one plugin's
own behaviour say so with ``needs_plugin`` and are skipped where it is not loaded.
"""
from __future__ import annotations

import importlib
import json
import os
import pathlib
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest

from hub.assessments import services
from hub.auth import create_user
from hub.config import plugin_paths
from hub.extensions import db
from hub.inbox import WebhookDelivery
from hub.models import ApiToken, Connection, User, utcnow
from hub.registry import all_plugins
from tests.conftest import _make_app, csrf_token, sign_in
from tests.hub.assessments.conftest import SAMPLE
from tests.workers import make_connection

CLIENT_ID, CLIENT_SECRET = "wecp-hub-test", "test-client-secret"
CALLBACK_PATH = "/integrations/wecp_lever/connect/callback"
PAGE = "/settings/integrations"
LEVER_FIXTURES = pathlib.Path(__file__).parents[1] / "plugins" / "wecp_lever" / "fixtures" / "lever"


#: A plugin of the other shape (the ATS calls WeCP), loaded beside whatever HUB_PLUGINS names: the
#: suite holds every plugin it loads to the same rules, with no test naming it.
PARTNER_EXAMPLE = "tests.plugins.partner_example"


def security_plugins() -> list[str]:
    """The plugins the suite loads: those of HUB_PLUGINS (as the hub reads it) and the partner example."""
    return list(dict.fromkeys([*plugin_paths(os.environ.get("HUB_PLUGINS", "")), PARTNER_EXAMPLE]))


@pytest.fixture
def app(database_url, redis_server, app_config):
    """The hub with the suite's plugins, on each database."""
    app = _make_app(database_url, redis_server, {"HUB_PLUGINS": security_plugins(), **app_config})
    with app.app_context():
        yield app
        db.session.remove()


def loaded_keys() -> list[str]:
    """The keys of the plugins the suite loads (a plugin's key is the last part of its path)."""
    return [path.rsplit(".", 1)[-1] for path in security_plugins()]


def needs_plugin(key: str):
    """Mark a test of one plugin's own routes or flow: skipped where that plugin is not loaded."""
    return pytest.mark.skipif(key not in loaded_keys(), reason=f"{key} is not in HUB_PLUGINS")


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
    token_id: int
    email_id: str
    marker: str  # text that appears in this organization's data and nowhere else
    organization_id: int = 0
    #: Sample values of the plugins' URL arguments, naming this organization's own rows.
    plugin_rows: dict = field(default_factory=dict)
    #: This organization's connection of each loaded plugin, by plugin key.
    connections: dict = field(default_factory=dict)
    #: The plugin whose connection and delivery the hub's routes are called with (the first loaded).
    plugin_key: str = ""

    def endpoint_of(self, plugin_key: str) -> str:
        """The webhook endpoint id of this organization's connection of ``plugin_key``."""
        return db.session.get(Connection, self.connections[plugin_key]).endpoint_id


def plugin_security_modules() -> dict:
    """``tests.plugins.<key>.security`` of every loaded plugin that has one, by key."""
    found = {}
    for key in all_plugins():
        try:
            found[key] = importlib.import_module(f"tests.plugins.{key}.security")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"tests.plugins.{key}", f"tests.plugins.{key}.security"):
                raise
    return found


def partner_connection(org: Org, plugin_key: str, provider: str) -> Connection:
    """A connection of a provider that calls WeCP with keys WeCP issues (no credentials of its own),
    for a plugin's ``security.connect``; its keys come from ``hub.partner_keys.issue_key``."""
    conn = Connection(organization_id=org.organization_id, plugin_key=plugin_key, provider=provider,
                      connected_at=utcnow(), setup_completed_at=utcnow(),
                      external_account_name=f"{org.marker}.{plugin_key}.example")
    conn.credentials = json.dumps({})
    db.session.add(conn)
    db.session.commit()
    return conn


def make_org(name: str) -> Org:
    """An organization with an admin, a member, a test, a completed invitation with its report,
    an API token, a connection of each loaded plugin (made by its ``security.connect`` where it
    has one), one failed delivery, and each loaded plugin's rows (``security.seed``)."""
    slug = name.lower().replace(" ", "-")
    marker = f"Secret-of-{slug}"
    admin = create_user(name, f"admin@{slug}.example", "correct horse battery", "admin")
    member = create_user(name, f"member@{slug}.example", "correct horse battery", "member")
    db.session.commit()
    test = services.save_test(admin.organization_id, {**SAMPLE, "title": f"{marker} test"})
    db.session.commit()
    plugins = all_plugins()
    invitation, _ = services.create_invitation(
        test.id, name=f"{marker} candidate", email=f"cand@{slug}.example", source=next(iter(plugins)),
        source_ref="opp-1", idempotency_key=f"sec:{slug}")
    token = invitation.token
    services.start_invitation(token)
    result = services.complete_invitation(token, {})
    api, _ = ApiToken.issue(admin, f"{marker} token")
    db.session.add(api)
    db.session.commit()
    email_id = services.invitation_email(invitation.id).id
    org = Org(name=name, admin=admin, member=member, test_id=test.id, invitation_id=invitation.id,
              invitation_token=token, result_id=result.id, report_token=result.report_token,
              connection_id="", endpoint_id="", webhook_secret=f"whsec-{slug}-0123456789abcdef",
              delivery_id=0, token_id=api.id, email_id=email_id, marker=marker,
              organization_id=admin.organization_id)
    modules = plugin_security_modules()
    for key, plugin in plugins.items():
        module = modules.get(key)
        # A plugin without providers may still take webhooks (its connections name the source).
        names = [p.name for p in plugin.providers] or [s.name for s in plugin.webhook_sources]
        if hasattr(module, "connect"):
            org.connections[key] = module.connect(org).id
        elif names:
            org.connections[key] = make_connection(
                plugin_key=key, provider=names[0], org_name=name, webhook_secret=org.webhook_secret,
                external_account_name=f"{marker}.{key}.example").id
    connection = db.session.get(Connection, next(iter(org.connections.values())))
    sample = plugins[connection.plugin_key]
    delivery = WebhookDelivery(connection_id=connection.id, plugin_key=sample.key, source=connection.provider,
                               event="sample", dedupe_key=f"dedupe-{slug}",
                               payload={"data": {}}, status="failed", error=f"{marker}: boom")
    db.session.add(delivery)
    db.session.commit()
    org.plugin_key, org.connection_id, org.endpoint_id = sample.key, connection.id, connection.endpoint_id
    org.delivery_id = delivery.id
    for module in modules.values():
        org.plugin_rows.update(module.seed(org))
    return org


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
