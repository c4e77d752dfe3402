"""The hub's own tests run with no provider plugin: the plugins of ``HUB_TEST_PLUGINS`` only.

By default those are the tests' two example plugins, one of each integration shape (the tiny one:
the vendor listens; the partner one: the ATS calls WeCP), so nothing here leans on an integration
the hub ships. ``./run test`` runs these tests a second time with two plugins loaded (the tiny one
and every shipped integration), to show that a second plugin changes nothing for the hub.
"""
from __future__ import annotations

import os

import pytest

TINY = "tests.plugins.tiny_example"
PARTNER = "tests.plugins.partner_example"


def hub_test_plugins() -> list[str]:
    """The plugins the hub's tests load: the two examples, and those of ``HUB_TEST_PLUGINS``
    (comma-separated)."""
    named = [p.strip() for p in os.environ.get("HUB_TEST_PLUGINS", "").split(",") if p.strip()]
    return list(dict.fromkeys([TINY, PARTNER, *named]))


@pytest.fixture
def app_config():
    """Override in a module to change the app's config (keep ``HUB_PLUGINS`` from here)."""
    return {"HUB_PLUGINS": hub_test_plugins()}
