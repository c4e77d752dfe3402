"""Limits where guessing is possible: bearer API calls and candidate and report link lookups,
per client address, shared by every web process (Redis)."""
from __future__ import annotations

import secrets

from hub import create_app
from tests.conftest import base_config
from tests.hub.conftest import hub_test_plugins

GUESSER, OTHER = "203.0.113.9", "198.51.100.20"


def test_guessing_candidate_and_report_links_is_slowed_per_address(app, client):
    app.config["HUB_LINK_LOOKUPS_PER_MINUTE"] = 5
    answers = [client.get(f"/{kind}/{secrets.token_urlsafe(32)}", environ_base={"REMOTE_ADDR": GUESSER}).status_code
               for kind in ("t", "r", "t", "r", "t", "r", "t")]
    assert answers[:5] == [404] * 5 and answers[5:] == [429, 429]
    refused = client.get("/t/x", environ_base={"REMOTE_ADDR": GUESSER})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    # Another address (a real candidate) is not affected.
    assert client.get("/t/x", environ_base={"REMOTE_ADDR": OTHER}).status_code == 404


def test_bearer_api_calls_are_limited_per_address_across_processes(app, client):
    app.config["HUB_API_CALLS_PER_MINUTE"] = 4
    other = create_app(base_config(app.config["DATABASE_URL"], app.config["REDIS_URL"], HUB_PLUGINS=hub_test_plugins(),
                                   HUB_API_CALLS_PER_MINUTE=4)).test_client()
    guesses = [(client, other)[i % 2].get("/api/v1/me", environ_base={"REMOTE_ADDR": GUESSER},
                                          headers={"Authorization": f"Bearer hub_{secrets.token_urlsafe(32)}"})
               for i in range(6)]
    assert [r.status_code for r in guesses] == [401] * 4 + [429] * 2
    assert guesses[-1].json["error"] and "Retry-After" in guesses[-1].headers
    assert client.get("/api/v1/me", environ_base={"REMOTE_ADDR": OTHER},
                      headers={"Authorization": "Bearer hub_x"}).status_code == 401
