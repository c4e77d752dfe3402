"""The hub's own tests run with no provider plugin: the plugins of ``HUB_TEST_PLUGINS`` only.

By default that is the tiny example plugin of the tests, so nothing here leans on an integration
the hub ships. ``./run test`` runs these tests a second time with two plugins loaded (the tiny one
and every shipped integration), to show that a second plugin changes nothing for the hub.
"""
from __future__ import annotations

import os

import pytest

TINY = "tests.plugins.tiny_example"


def hub_test_plugins() -> list[str]:
    """The plugins the hub's tests load: ``HUB_TEST_PLUGINS`` (comma-separated), else the tiny one."""
    named = [p.strip() for p in os.environ.get("HUB_TEST_PLUGINS", TINY).split(",") if p.strip()]
    return named if TINY in named else [TINY, *named]


@pytest.fixture
def app_config():
    """Override in a module to change the app's config (keep ``HUB_PLUGINS`` from here)."""
    return {"HUB_PLUGINS": hub_test_plugins()}
