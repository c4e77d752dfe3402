"""The plugin contract, checked against every plugin ``HUB_PLUGINS`` loads (as the hub reads it:
unset, the integrations it ships) and the tests' two examples, one of each integration shape."""
from __future__ import annotations

import os
from importlib import import_module

import pytest

from hub import create_app
from hub.config import plugin_paths
from hub.extensions import db
from hub.jobs import registered_jobs, spec_of
from hub.models import Connection, utcnow
from hub.plugin import WebhookSource
from hub.registry import all_plugins, import_string
from tests.conftest import base_config, sign_in

#: The plugins the hub loads here, then the tests' tiny one (the vendor listens) and their partner
#: example (the ATS calls WeCP): adding a plugin to HUB_PLUGINS puts it under this contract.
PLUGINS = list(dict.fromkeys([*plugin_paths(os.environ.get("HUB_PLUGINS", "")),
                              "tests.plugins.tiny_example", "tests.plugins.partner_example"]))


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": PLUGINS}


def plugin_params():
    return [pytest.param(path, id=path.rsplit(".", 1)[1]) for path in PLUGINS]


@pytest.mark.parametrize("path", plugin_params())
def test_key_is_the_folder_url_segment_blueprint_and_logger(app, path):
    module = import_string(path)
    plugin = module.plugin
    assert plugin.key == os.path.basename(os.path.dirname(module.__file__))
    assert plugin.key in all_plugins()
    if plugin.blueprint:
        bp = import_string(plugin.blueprint)
        assert bp.name == plugin.key
        rules = [r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith(plugin.key + ".")]
        assert rules and all(r.startswith(f"/integrations/{plugin.key}/") for r in rules)
        if bp.template_folder:
            folder = os.path.join(bp.root_path, bp.template_folder)
            assert os.listdir(folder) == [plugin.key], "templates live in templates/<key>/"


@pytest.mark.parametrize("path", plugin_params())
def test_partner_routes_live_under_the_key_and_answer_no_caller_without_a_key(app, path):
    """Partner endpoints are mounted at /partners/<key>/, declared ``partner``, and a call without
    a key is refused (401, JSON) on every route and method, before the plugin's code runs."""
    plugin = import_string(path).plugin
    if not plugin.partner_blueprint:
        pytest.skip("no partner endpoints")
    bp = import_string(plugin.partner_blueprint)
    assert bp.name.startswith(plugin.key + "_"), "the partner blueprint's name starts with the key"
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith(bp.name + ".")]
    assert rules and all(r.rule.startswith(f"/partners/{plugin.key}/") for r in rules)
    client = app.test_client()
    for rule in rules:
        assert plugin.access[rule.endpoint] == "partner"
        url = rule.rule
        for name in rule.arguments:
            url = url.replace(f"<{name}>", "1").replace(f"<int:{name}>", "1").replace(f"<string:{name}>", "1")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            answer = client.open(url, method=method, json={})
            assert answer.status_code == 401 and answer.is_json, (rule.endpoint, method, answer.status_code)
            assert "WWW-Authenticate" in answer.headers and "Set-Cookie" not in answer.headers


@pytest.mark.parametrize("path", plugin_params())
def test_tables_are_prefixed_with_the_key(app, path):
    plugin = import_string(path).plugin
    for mapper in db.Model.registry.mappers:
        if mapper.class_.__module__.startswith(path + "."):
            assert mapper.local_table.name.startswith(plugin.key + "_"), mapper.local_table.name


@pytest.mark.parametrize("path", plugin_params())
def test_blueprint_builds_twice(redis_server, sqlite_url, path):
    plugin = import_string(path).plugin
    apps = [create_app(base_config(sqlite_url, redis_server.url, HUB_PLUGINS=PLUGINS)) for _ in range(2)]
    for one in apps:
        assert plugin.key in all_plugins(one)
        if plugin.blueprint:
            assert plugin.key in one.blueprints


@pytest.mark.parametrize("path", plugin_params())
def test_every_job_is_registered_and_importable_by_a_worker(app, path):
    """A worker finds each job by the dotted path RQ stores: it must resolve to the same job."""
    plugin = import_string(path).plugin
    funcs = list(plugin.jobs) + [j.func for j in plugin.periodic_jobs]
    if plugin.connect_job():
        funcs.append(plugin.connect_job())
    assert funcs, "a plugin without jobs tests nothing here"
    for func in funcs:
        spec = spec_of(func)
        assert registered_jobs()[spec.name] is spec
        module, _, attr = spec.name.rpartition(".")
        assert getattr(import_module(module), attr).job is spec, spec.name
        assert module.startswith(path), f"{spec.name} lives outside the plugin"
    for source in plugin.webhook_sources:
        assert type(source).handle is not WebhookSource.handle, f"{source.name} handles nothing"


@pytest.mark.parametrize("path", plugin_params())
def test_secrets_are_never_rendered(app, make_user, path):
    """The plugin's pages, the Integrations page and the API never show a connection's secrets."""
    plugin = import_string(path).plugin
    admin = make_user(role="admin")
    conn = Connection(organization_id=admin.organization_id, plugin_key=plugin.key,
                      provider=plugin.providers[0].name if plugin.providers else "tiny",
                      connected_at=utcnow(), setup_completed_at=utcnow())
    conn.credentials = '{"access_token": "at-SECRET-1", "refresh_token": "rt-SECRET-2"}'
    conn.webhook_secret = "whsec-SECRET-3"
    db.session.add(conn)
    db.session.commit()
    client = app.test_client()
    sign_in(client, admin.email)
    pages = ["/settings/integrations", "/api/v1/integrations"]
    pages += [r.rule for r in app.url_map.iter_rules()
              if r.endpoint.startswith(plugin.key + ".") and "GET" in r.methods and not r.arguments]
    for page in pages:
        body = client.get(page).get_data(as_text=True)
        for secret in ("at-SECRET-1", "rt-SECRET-2", "whsec-SECRET-3"):
            assert secret not in body, f"{secret} rendered on {page}"


def test_hub_plugins_means_the_same_for_the_hub_and_this_contract(redis_server, sqlite_url):
    """Unset, HUB_PLUGINS is the shipped integrations, for the hub as for the plugins checked here."""
    from plugins import DEFAULT_PLUGINS

    assert plugin_paths("") == plugin_paths(None) == list(DEFAULT_PLUGINS)
    assert plugin_paths(" tests.plugins.tiny_example , ,x.y") == ["tests.plugins.tiny_example", "x.y"]
    app = create_app(base_config(sqlite_url, redis_server.url, HUB_PLUGINS=""))
    assert app.config["HUB_PLUGINS"] == list(DEFAULT_PLUGINS)
    assert set(DEFAULT_PLUGINS) <= set(PLUGINS)
