import importlib
import logging
import re

import pytest

from hub import create_app
from hub.plugin import WebhookSource
from hub.registry import PluginLoadError, all_plugins, get_plugin
from tests.conftest import base_config

TINY = "tests.plugins.tiny_example"
SECOND = "tests.plugins.second_example"


@pytest.fixture
def app_config():
    return {"HUB_PLUGINS": [SECOND, TINY]}


def test_second_plugin_registers_page_webhook_source_and_job_without_hub_edits(app, admin_client):
    plugin = get_plugin("tiny_example")
    assert set(all_plugins()) == {"second_example", "tiny_example"}
    assert type(plugin.webhook_sources[0]).handle is not WebhookSource.handle
    from hub.outbox import active_kinds

    assert [j.job.name for j in plugin.jobs] == [TINY + ".work.echo"]
    assert TINY + ".work.echo" in {k.name for k in active_kinds(app)}  # its durable work is swept
    assert "tiny_example.index" in app.view_functions
    assert admin_client.get("/integrations/tiny_example/").status_code == 200
    assert b"Tiny example page" in admin_client.get("/integrations/tiny_example/").data


def test_plugins_live_in_the_app_not_in_a_module_global(redis_server, sqlite_url):
    one = create_app(base_config(sqlite_url, redis_server.url, HUB_PLUGINS=[SECOND]))
    two = create_app(base_config(sqlite_url, redis_server.url, HUB_PLUGINS=[SECOND, TINY]))
    assert set(all_plugins(one)) == {"second_example"}
    assert set(all_plugins(two)) == {"second_example", "tiny_example"}


def test_broken_plugin_fails_outside_production(redis_server, sqlite_url):
    with pytest.raises(PluginLoadError, match="folder"):
        create_app(base_config(sqlite_url, redis_server.url, HUB_PLUGINS=["tests.broken_plugin"]))


def test_broken_plugin_is_logged_and_skipped_in_production(redis_server, sqlite_url, caplog):
    config = base_config(sqlite_url, redis_server.url,
                         HUB_PLUGINS=[SECOND, "tests.broken_plugin"],
                         HUB_STRICT_PLUGINS=False)
    with caplog.at_level(logging.ERROR):
        app = create_app(config)
    assert set(all_plugins(app)) == {"second_example"}
    assert "tests.broken_plugin" in caplog.text


def test_missing_plugin_module_fails_loudly(redis_server, sqlite_url):
    with pytest.raises(PluginLoadError):
        create_app(base_config(sqlite_url, redis_server.url, HUB_PLUGINS=["plugins.does_not_exist"]))


@pytest.mark.parametrize("access, problem", [
    ({}, "undeclared ['tiny_example.index']"),
    ({"tiny_example.index": "member", "tiny_example.gone": "admin"}, "not routes ['tiny_example.gone']"),
    ({"tiny_example.index": "everyone"}, "unknown level ['tiny_example.index']"),
])
def test_a_plugin_must_say_who_may_call_each_of_its_routes(redis_server, sqlite_url, monkeypatch, access, problem):
    from tests.plugins import tiny_example

    monkeypatch.setattr(type(tiny_example.plugin), "access", access)
    with pytest.raises(PluginLoadError, match=re.escape(problem)):
        create_app(base_config(sqlite_url, redis_server.url, HUB_PLUGINS=[TINY]))


PARTNER = "tests.plugins.partner_example"


@pytest.mark.parametrize("plugin_path, endpoint, level", [
    (TINY, "tiny_example.index", "partner"),  # a page of the hub is not a partner endpoint
    (PARTNER, "partner_example_partner.send", "public"),  # a partner endpoint is one
])
def test_partner_is_the_level_of_partner_endpoints_and_of_nothing_else(redis_server, sqlite_url, monkeypatch,
                                                                        plugin_path, endpoint, level):
    plugin = importlib.import_module(plugin_path).plugin
    monkeypatch.setattr(type(plugin), "access", {**plugin.access, endpoint: level})
    with pytest.raises(PluginLoadError, match=re.escape(f"unknown level ['{endpoint}']")):
        create_app(base_config(sqlite_url, redis_server.url, HUB_PLUGINS=[plugin_path]))


def test_partner_endpoints_need_a_provider_whose_keys_authenticate_them(redis_server, sqlite_url, monkeypatch):
    plugin = importlib.import_module(PARTNER).plugin
    monkeypatch.setattr(type(plugin), "providers", plugin.providers[1:])  # the pasted key only
    with pytest.raises(PluginLoadError, match="needs a PartnerKeyProvider"):
        create_app(base_config(sqlite_url, redis_server.url, HUB_PLUGINS=[PARTNER]))
