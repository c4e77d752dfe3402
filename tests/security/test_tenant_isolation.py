"""Tenant isolation: an organization sees and changes only its own data, in pages, the API and webhooks."""
from __future__ import annotations

import pytest

from hub.assessments.models import AssessmentTest, Result
from hub.extensions import db
from hub.inbox import WebhookDelivery
from hub.models import Connection
from tests.conftest import csrf_token
from tests.plugins.wecp_lever.signing import lever_body
from tests.security.conftest import api_token, lever_fixture, needs_plugin, plugin_security_modules
from tests.security.test_roles import access_of, calls, send

#: URL arguments of the hub's routes that name a row of one organization (each plugin adds its own:
#: ``TENANT_ARGUMENTS`` in ``tests/plugins/<key>/security.py``).
HUB_TENANT_ARGUMENTS = {"test_id", "result_id", "connection_id", "row_id", "token_id", "invitation_id", "email_id"}


def tenant_arguments() -> set[str]:
    arguments = set(HUB_TENANT_ARGUMENTS)
    for module in plugin_security_modules().values():
        arguments |= module.TENANT_ARGUMENTS
    return arguments


def test_every_url_with_an_id_refuses_another_organizations_object(app, org_a, org_b, browser):
    """Org B's admin, given the ids of Org A's rows, gets 404 everywhere: not even a 403 that
    would confirm the row exists."""
    intruder = browser(org_b.admin)
    token = csrf_token(intruder, "/settings/integrations")
    checked = []
    tenant = tenant_arguments()
    for rule in app.url_map.iter_rules():
        if not tenant & set(rule.arguments):
            continue
        for endpoint, method, url in calls(app, org_a):
            if endpoint == rule.endpoint:
                response = send(intruder, method, url, token)
                assert response.status_code == 404, (endpoint, method, url, response.status_code)
                assert org_a.marker not in response.get_data(as_text=True)
                checked.append(endpoint)
    assert len(checked) >= 8
    db.session.expire_all()
    assert db.session.get(AssessmentTest, org_a.test_id).title == f"{org_a.marker} test"
    assert db.session.get(Result, org_a.result_id).report_token_hash is not None
    assert db.session.get(WebhookDelivery, org_a.delivery_id).status == "failed"


def test_no_page_or_api_list_shows_another_organizations_data(app, org_a, org_b, browser):
    """Every page and API call without an id in its URL, as Org B's admin: nothing of Org A."""
    intruder = browser(org_b.admin)
    seen = []
    for endpoint, method, url in calls(app, org_b):
        if method != "GET" or access_of(endpoint) not in ("member", "admin") \
                or endpoint.startswith("rq_dashboard."):  # jobs carry ids only (see README)
            continue
        rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
        if rule.arguments - {"plugin_key"}:
            continue
        response = intruder.get(url)
        body = response.get_data(as_text=True)
        assert org_a.marker not in body and org_a.admin.email not in body, (endpoint, url)
        seen.append((endpoint, response.status_code))
    # The lists exist and show Org B's own rows, so the check above looked at real pages.
    assert org_b.marker in intruder.get("/tests").get_data(as_text=True)
    assert org_b.marker in intruder.get("/settings/integrations").get_data(as_text=True)
    assert org_b.marker in intruder.get("/dev/outbox").get_data(as_text=True)
    assert org_b.marker in intruder.get("/settings/work").get_data(as_text=True)
    assert len(seen) >= 8


def test_api_token_sees_only_its_organizations_tests(app, org_a, org_b):
    bearer = {"Authorization": f"Bearer {api_token(org_b.member)}"}
    client = app.test_client()
    titles = [t["title"] for t in client.get("/api/v1/tests", headers=bearer).json["data"]]
    assert titles == [f"{org_b.marker} test"]
    assert client.get(f"/api/v1/tests/{org_a.test_id}", headers=bearer).status_code == 404


def test_new_rows_belong_to_the_callers_organization_whatever_the_body_says(app, org_a, org_b):
    bearer = {"Authorization": f"Bearer {api_token(org_b.admin)}"}
    body = {"title": "Planted", "questions": [{"text": "?", "options": ["a", "b"], "correct": [0]}]}
    client = app.test_client()
    planted = client.post("/api/v1/tests", json={**body, "organization_id": org_a.admin.organization_id},
                          headers=bearer)
    assert planted.status_code == 422 and "organization_id" in planted.json["fields"]
    created = client.post("/api/v1/tests", json=body, headers=bearer)
    assert created.status_code == 201
    test = db.session.get(AssessmentTest, created.json["data"]["id"])
    assert test.organization_id == org_b.admin.organization_id


def post_delivery(client, endpoint_id: str, body: bytes):
    return client.post(f"/webhooks/wecp_lever/{endpoint_id}", data=body,
                       headers={"Content-Type": "application/json"})


def deliveries_of(connection_id: str) -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(WebhookDelivery).filter_by(
        connection_id=connection_id, status="pending")))


@needs_plugin("wecp_lever")
def test_webhook_for_org_a_cannot_reach_org_b(app, org_a, org_b, client):
    """A delivery is tied to the connection of the URL it arrives at, and must carry that
    connection's signature: Org A's signing secret opens nothing at Org B's endpoint."""
    payload = lever_fixture("candidateStageChange")
    assert post_delivery(client, org_b.endpoint_of("wecp_lever"), lever_body(org_a.webhook_secret, payload)).status_code == 401
    assert deliveries_of(org_b.connections["wecp_lever"]) == [] and deliveries_of(org_a.connections["wecp_lever"]) == []

    assert post_delivery(client, org_a.endpoint_of("wecp_lever"), lever_body(org_a.webhook_secret, payload)).status_code == 200
    assert len(deliveries_of(org_a.connections["wecp_lever"])) == 1 and deliveries_of(org_b.connections["wecp_lever"]) == []


@needs_plugin("wecp_lever")
def test_webhook_payload_cannot_choose_its_connection(app, org_a, org_b, client):
    """Fields naming another organization or connection in the body change nothing: only the
    unguessable endpoint id in the URL picks the connection."""
    payload = dict(lever_fixture("candidateStageChange"), connection_id=org_b.connections["wecp_lever"],
                   endpoint_id=org_b.endpoint_of("wecp_lever"), organization_id=org_b.admin.organization_id,
                   accountId="org-b")
    response = post_delivery(client, org_a.endpoint_of("wecp_lever"), lever_body(org_a.webhook_secret, payload))
    assert response.status_code == 200
    assert len(deliveries_of(org_a.connections["wecp_lever"])) == 1 and deliveries_of(org_b.connections["wecp_lever"]) == []


@needs_plugin("wecp_lever")
@pytest.mark.parametrize("endpoint", ["", "x", "0", "1", "wecp_lever", "%2A", "' OR '1'='1"])
def test_a_guessed_webhook_endpoint_finds_nothing(app, org_a, client, endpoint):
    body = lever_body(org_a.webhook_secret, lever_fixture("candidateStageChange"))
    assert post_delivery(client, endpoint, body).status_code in (404, 405)
    assert deliveries_of(org_a.connections["wecp_lever"]) == []


@needs_plugin("wecp_lever")
def test_webhook_endpoint_ids_are_unguessable(app, org_a, org_b):
    ids = [db.session.get(Connection, c).endpoint_id for c in (org_a.connections["wecp_lever"], org_b.connections["wecp_lever"])]
    assert all(len(i) >= 32 for i in ids) and ids[0] != ids[1]


def _key_headers(plugin, key: str) -> dict:
    import base64

    provider = next(p for p in plugin.providers if p.auth_mode == "partner_key")
    if provider.scheme == "basic":
        return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    return {"Authorization": f"Bearer {key}"}


def test_a_partner_key_never_reaches_another_organizations_data(app, org_a, org_b):
    """Org B's key, on every partner route without an id (lists) and on each call naming Org A's
    rows (``partner_calls`` of the plugin's security module): nothing of Org A, and 404 for its rows."""
    from hub.registry import all_plugins
    from tests.security.test_roles import partner_routes

    client = app.test_client()
    lists = calls_naming = 0
    for plugin, rules in partner_routes(app).items():
        theirs = _key_headers(plugin, org_b.plugin_rows[f"partner_key:{plugin.key}"])
        for rule in rules:
            if rule.arguments or "GET" not in rule.methods:
                continue
            body = client.get(rule.rule, headers=theirs).get_data(as_text=True)
            assert org_a.marker not in body, rule.endpoint
            lists += org_b.marker in body  # the list shows B's own rows: it looked at real data
    for module in plugin_security_modules().values():
        for method, path in getattr(module, "partner_calls", lambda org: [])(org_a):
            plugin = all_plugins()[path.split("/")[2]]
            mine = _key_headers(plugin, org_a.plugin_rows[f"partner_key:{plugin.key}"])
            theirs = _key_headers(plugin, org_b.plugin_rows[f"partner_key:{plugin.key}"])
            assert client.open(path, method=method, headers=mine).status_code == 200, path
            other = client.open(path, method=method, headers=theirs)
            assert other.status_code == 404 and org_a.marker not in other.get_data(as_text=True), path
            calls_naming += 1
    assert lists >= 1 and calls_naming >= 1
