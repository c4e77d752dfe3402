"""Roles: who may use each URL of the hub. Admins connect, revoke and operate; members build tests;
candidates reach only their invitation; report links open only their report."""
from __future__ import annotations

import pytest

from hub.assessments.models import Result
from hub.extensions import db
from hub.inbox import WebhookDelivery
from hub.models import Connection
from hub.registry import all_plugins
from tests.conftest import OPERATOR_PASSWORD, csrf_token, sign_in
from tests.security.conftest import Org, api_token, needs_plugin

#: Every endpoint of the hub and who may use it; each plugin declares its own in ``Plugin.access``
#: (the hub refuses to load a plugin that leaves a route out). A new hub route fails
#: ``test_every_route_declares_who_may_use_it`` until it is added here, on purpose: adding a
#: URL means deciding who may call it.
HUB_ACCESS = {
    # Anyone: signing in, health probes, static files.
    "auth.login": "public", "auth.logout": "public", "static": "public",
    "health.healthz": "public", "health.readyz": "public",
    # The token in the URL is the key (candidate invitations, report links, webhook endpoints).
    "candidate.show": "token", "candidate.start": "token", "candidate.submit": "token",
    "candidate.done": "token", "assessments.report": "token", "webhooks.receive": "token",
    # Any signed-in user of the organization.
    "settings.home": "member", "settings.index": "member", "settings.activity": "member",
    "auth.account": "member", "auth.sign_out_everywhere": "member", "auth.change_own_password": "member",
    "auth.create_token": "member", "auth.revoke_token": "member",
    "api.me": "member", "api.integrations": "member", "api.openapi": "public",
    "assessments.tests": "member", "assessments.new_test": "member",
    "assessments.edit_test": "member", "assessments.test": "member", "assessments.result": "member",
    "assessments_api.list_tests": "member", "assessments_api.create_test": "member",
    "assessments_api.get_test": "member",
    # Admins and super admins only.
    "connections.connect": "admin", "connections.callback": "admin", "connections.revoke": "admin",
    "connections.confirm_revoke": "admin", "connections.rotate": "admin",
    "connections.revoke_partner_key": "admin",
    "webhooks.retry_failed": "admin", "mail.outbox": "admin", "mail.outbox_html": "admin", "work.index": "admin", "work.retry": "admin",
    "assessments.revoke_report_link": "admin", "assessments.new_report_link": "admin",
    "assessments.regrade": "admin", "settings.emails": "admin",
}
# The job dashboard, every page and action of it: the hub's operators only (404 for all others).
OPERATOR_BLUEPRINTS = ("rq_dashboard.", "metrics.")


def access_of(endpoint: str) -> str | None:
    """Who may call ``endpoint`` of the current app: the hub's map, else its plugin's declaration."""
    if endpoint.startswith(OPERATOR_BLUEPRINTS):
        return "operator"
    if endpoint in HUB_ACCESS:
        return HUB_ACCESS[endpoint]
    for plugin in all_plugins().values():
        if endpoint in plugin.access:
            return plugin.access[endpoint]
    return None


def url_for_rule(rule, org: Org) -> str:
    """The rule's URL with ``org``'s own objects in it (so only the role can refuse the call)."""
    values = {"plugin_key": org.plugin_key, "test_id": org.test_id, "result_id": org.result_id,
              "connection_id": org.connection_id, "endpoint_id": org.endpoint_id,
              "token": org.invitation_token, "instance_number": 0, "job_id": "x",
              "queue_name": "webhooks", "registry_name": "failed", "per_page": 10, "order": "asc",
              "page": 1, "filename": "hub.css",
              "kind_name": "hub.inbox.process_delivery", "row_id": org.delivery_id, "token_id": org.token_id,
              "key_id": 1,
              "invitation_id": org.invitation_id, "email_id": org.email_id, **org.plugin_rows}
    if rule.endpoint == "assessments.report":
        values["token"] = org.report_token
    plugin = all_plugins().get(rule.endpoint.split(".")[0])
    if rule.endpoint.endswith(".static") and plugin is not None and plugin.logo:
        values["filename"] = plugin.logo
    missing = set(rule.arguments) - set(values)
    assert not missing, f"{rule.endpoint}: give a sample value for {missing} in url_for_rule"
    url = rule.rule
    for name in rule.arguments:
        url = url.replace(f"<{name}>", str(values[name]))
        for converter in ("int", "path", "string"):
            url = url.replace(f"<{converter}:{name}>", str(values[name]))
    return url


def calls(app, org: Org):
    """(endpoint, method, url) for every route of the app."""
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url_for_rule(rule, org)


def send(client, method: str, url: str, token: str | None):
    """One call with a valid CSRF token, so only sign-in and role decide the answer."""
    headers = {"X-CSRFToken": token} if token else {}
    data = {"csrf_token": token} if token and method == "POST" else None
    response = client.open(url, method=method, headers=headers, data=data)
    if response.status_code == 308:  # a route's canonical form (e.g. rq-dashboard's aliases)
        response = client.open(response.headers["Location"], method=method, headers=headers, data=data)
    return response


def test_every_route_declares_who_may_use_it(app):
    undeclared = sorted({r.endpoint for r in app.url_map.iter_rules() if access_of(r.endpoint) is None})
    assert undeclared == [], f"declare who may call these endpoints in HUB_ACCESS: {undeclared}"


def test_anonymous_visitors_reach_only_public_and_token_urls(app, org_a, browser):
    anonymous = browser()
    token = csrf_token(anonymous)
    for endpoint, method, url in calls(app, org_a):
        if access_of(endpoint) in ("member", "admin"):
            response = send(anonymous, method, url, token)
            signed_out = response.status_code == 401 or (
                response.status_code == 302 and "/login" in response.headers["Location"])
            assert signed_out, (endpoint, method, url, response.status_code)


def test_members_are_refused_every_admin_url(app, org_a, browser):
    member = browser(org_a.member)
    token = csrf_token(member, "/settings/integrations")
    checked = 0
    for endpoint, method, url in calls(app, org_a):
        if access_of(endpoint) == "admin":
            assert send(member, method, url, token).status_code == 403, (endpoint, method, url)
            checked += 1
    assert checked >= 8
    db.session.expire_all()
    assert db.session.get(Result, org_a.result_id).report_token_hash is not None
    assert db.session.get(WebhookDelivery, org_a.delivery_id).status == "failed"
    assert db.session.get(Connection, org_a.connection_id).disconnected_at is None


def providers_loaded():
    """(plugin key, provider) of every provider of every loaded plugin."""
    return [(key, provider) for key, plugin in all_plugins().items() for provider in plugin.providers]


def test_members_cannot_connect_or_revoke_any_provider(org_a, browser):
    """Connect, its callback and Revoke, for every provider of every loaded plugin and every kind
    of connection: 403 for a member, nothing started, nothing disconnected."""
    member = browser(org_a.member)
    token = csrf_token(member, "/settings/integrations")
    for key, provider in providers_loaded():
        query = f"?provider={provider.name}"
        assert member.post(f"/integrations/{key}/connect{query}", data={"csrf_token": token}).status_code == 403
        assert member.get(f"/integrations/{key}/connect{query}").status_code == 403
        assert member.get(f"/integrations/{key}/connect/callback?state=x&code=y").status_code == 403
        assert member.post(f"/integrations/{key}/revoke{query}", data={"csrf_token": token}).status_code == 403
    assert "hub.oauth." not in (member.get_cookie("session").value or "")
    db.session.expire_all()
    assert all(db.session.get(Connection, c).usable for c in org_a.connections.values())


def test_member_cannot_see_the_job_dashboard(org_a, browser):
    member = browser(org_a.member)
    assert member.get("/admin/rq/").status_code == 404
    assert member.get("/admin/rq/0/data/queues.json").status_code == 404


def test_only_operators_reach_the_job_dashboard(app, org_a, browser, make_user, make_operator):
    """Every dashboard URL and method: 404 for anonymous callers, members, admins and super
    admins of an organization (with a valid CSRF token, so only the role decides)."""
    boss = make_user(org="Org A", role="super_admin", email="boss@org-a.example")
    checked = 0
    for user, page in ((None, "/login"), (org_a.member, "/settings/integrations"),
                       (org_a.admin, "/settings/integrations"), (boss, "/settings/integrations")):
        client = browser(user)
        token = csrf_token(client, page)
        for endpoint, method, url in calls(app, org_a):
            if access_of(endpoint) == "operator":
                response = send(client, method, url, token)
                assert response.status_code == 404, (user, endpoint, method, url, response.status_code)
                assert org_a.marker not in response.get_data(as_text=True)
                checked += 1
    assert checked >= 40
    operator = app.test_client()
    sign_in(operator, make_operator().email, OPERATOR_PASSWORD)
    assert operator.get("/admin/rq/").status_code == 200
    assert operator.get("/admin/rq/0/data/queues.json").status_code == 200


def test_admin_and_super_admin_may_connect(app, org_a, browser, make_user):
    """Connect, as an admin and a super admin, for every OAuth provider loaded: off to consent."""
    oauth = [(key, p) for key, p in providers_loaded() if p.auth_mode == "oauth2"]
    if not oauth:
        pytest.skip("no OAuth provider is loaded")
    boss = make_user(org="Org A", role="super_admin", email="boss@org-a.example")
    for user in (org_a.admin, boss):
        client = browser(user)
        for key, provider in oauth:
            response = client.post(f"/integrations/{key}/connect?provider={provider.name}",
                                   data={"csrf_token": csrf_token(client, "/settings/integrations")})
            assert response.status_code == 302, (key, provider.name, response.status_code)
            assert response.headers["Location"].startswith(provider.setting(app.config, "AUTHORIZE_URL")), (key, provider.name)


def test_member_creates_tests_in_the_page_and_the_api(org_a, browser):
    member = browser(org_a.member)
    assert member.get("/tests/new").status_code == 200
    body = {"title": "Made by a member", "questions": [
        {"text": "1 + 1?", "options": ["1", "2"], "correct": [1]}]}
    response = member.post("/api/v1/tests", json=body,
                           headers={"X-CSRFToken": csrf_token(member, "/tests/new")})
    assert response.status_code == 201
    bearer = {"Authorization": f"Bearer {api_token(org_a.member)}"}
    assert member.application.test_client().post("/api/v1/tests", json=body,
                                                  headers=bearer).status_code == 201


@needs_plugin("wecp_lever")
@pytest.mark.parametrize("role", ["member", "admin"])
def test_member_can_link_a_posting_to_a_test(app, org_a, browser, role):
    """Linking postings is a member's job (the Lever plugin adds the route)."""
    client = browser(getattr(org_a, role))
    response = client.get(f"/api/v1/tests/{org_a.test_id}/lever-links")
    assert response.status_code == 200


def test_a_candidate_link_opens_only_its_own_invitation(org_a, org_b, browser):
    candidate = browser()
    page = candidate.get(f"/t/{org_a.invitation_token}").get_data(as_text=True)
    assert org_a.marker in page and org_b.marker not in page
    # A report token, or a link with a character changed, is no invitation link.
    assert candidate.get(f"/t/{org_a.report_token}").status_code == 404
    assert candidate.get(f"/t/{org_a.invitation_token[:-1]}x").status_code == 404
    # The link gives no way into the staff pages of the test or its result.
    assert candidate.get(f"/tests/{org_a.test_id}").status_code == 302
    assert candidate.get(f"/results/{org_a.result_id}").status_code == 302


def test_a_report_link_opens_only_its_own_report(org_a, org_b, browser):
    reader = browser()
    page = reader.get(f"/r/{org_a.report_token}").get_data(as_text=True)
    assert org_a.marker in page and org_b.marker not in page
    assert reader.get(f"/r/{org_a.invitation_token}").status_code == 404
    assert reader.get(f"/r/{org_a.report_token[:-1]}x").status_code == 404
    assert reader.get(f"/results/{org_a.result_id}").status_code == 302


def partner_routes(app) -> dict:
    """Every route declared ``partner``, by its plugin: the endpoints the provider calls."""
    routes: dict = {}
    for rule in app.url_map.iter_rules():
        if access_of(rule.endpoint) == "partner":
            plugin = next(p for p in all_plugins().values() if rule.endpoint in p.access)
            routes.setdefault(plugin, []).append(rule)
    return routes


def test_partner_routes_answer_only_the_key_of_a_connection(app, org_a, browser):
    """Every partner route, whatever its plugin: refused (401, JSON, no cookie) without a key, with
    a signed-in admin's session, with an API token, or with the key in the wrong scheme; served to
    the organization's own key."""
    import base64

    routes = partner_routes(app)
    assert routes, "the suite loads a plugin of the partner shape"
    admin = browser(org_a.admin)
    bearer = {"Authorization": f"Bearer {api_token(org_a.admin)}"}
    checked = 0
    for plugin, rules in routes.items():
        key = org_a.plugin_rows.get(f"partner_key:{plugin.key}")
        assert key, f"tests/plugins/{plugin.key}/security.py: seed() returns 'partner_key:{plugin.key}'"
        provider = next(p for p in plugin.providers if p.auth_mode == "partner_key")
        good = ({"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
                if provider.scheme == "basic" else {"Authorization": f"Bearer {key}"})
        wrong_scheme = {"Authorization": f"Bearer {key}"} if provider.scheme == "basic" else \
            {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        for rule in rules:
            url = url_for_rule(rule, org_a)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                for caller, headers in ((app.test_client(), {}), (admin, {}), (app.test_client(), bearer),
                                        (app.test_client(), wrong_scheme)):
                    answer = caller.open(url, method=method, headers=headers, json={})
                    assert answer.status_code == 401 and answer.is_json, (rule.endpoint, method, headers.keys())
                    assert "Set-Cookie" not in answer.headers
                served = app.test_client().open(url, method=method, headers=good, json={})
                assert served.status_code != 401 and served.is_json, (rule.endpoint, method, served.status_code)
                checked += 1
    assert checked >= 3
