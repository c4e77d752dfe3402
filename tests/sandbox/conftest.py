"""Fixtures for the Lever sandbox's tests: one fast sandbox, reset per test, a webhook receiver."""
from __future__ import annotations

import pytest
from lever_sandbox_helpers import (
    ACME,
    ALL_SCOPES,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    Api,
    Receiver,
)

# Short retry delays keep the webhook tests fast (a reset restores the sandbox's own values).
FAST_CONFIG = {"SANDBOX_WEBHOOK_RETRY_DELAYS": [0.05, 0.1, 0.15, 0.2]}


@pytest.fixture
def sandbox(sandbox):
    """The suite's one sandbox (tests/conftest.py), reset to its seed with fast webhook retries."""
    sandbox.admin.reset("default")
    sandbox.admin.clear_faults()
    sandbox.admin.configure(**FAST_CONFIG)
    sandbox.admin.add_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI], name="Test App")
    return sandbox


@pytest.fixture
def tokens(sandbox):
    return sandbox.admin.mint_tokens(ACME, CLIENT_ID, ALL_SCOPES)


@pytest.fixture
def api(sandbox, tokens):
    return Api(sandbox.url, tokens["access_token"])


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()
