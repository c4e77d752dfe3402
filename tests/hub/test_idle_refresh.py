"""Refresh tokens that lapse after a day unused (#41, 1): the hourly idle check refreshes each
connection of such a provider well before, and reads only the connections due."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from hub import connections
from hub.connections import HUB_PERIODIC_JOBS, refresh_idle_connections
from hub.extensions import db
from hub.models import Connection, new_uuid, utcnow
from hub.plugin import OAuth2Provider
from hub.registry import get_plugin

#: A provider like one whose refresh tokens live 24 hours and rotate at each refresh.
SHORT = OAuth2Provider(name="short", title="Short-lived ATS", config_prefix="SHORT",
                       refresh_idle_after=timedelta(hours=6))


@pytest.fixture
def short_lived(app, monkeypatch):
    plugin = get_plugin("partner_example")
    monkeypatch.setattr(type(plugin), "providers", (*plugin.providers, SHORT))
    refreshed = []

    def token_endpoint(provider, refresh_token):
        refreshed.append(refresh_token)
        return {"access_token": f"at-{len(refreshed)}", "refresh_token": f"rt-{len(refreshed)}", "expires_in": 3600}

    monkeypatch.setattr(connections, "_call_token_endpoint", token_endpoint)
    return refreshed


def connection(make_user, org: str, refreshed_hours_ago: float) -> Connection:
    user = make_user(org=org)
    conn = Connection(id=new_uuid(), organization_id=user.organization_id, plugin_key="partner_example",
                      provider="short", connected_at=utcnow() - timedelta(days=3),
                      last_refresh_at=utcnow() - timedelta(hours=refreshed_hours_ago),
                      token_expires_at=utcnow() + timedelta(minutes=30))
    conn.credentials = json.dumps({"access_token": "at-0", "refresh_token": f"rt-{org}"})
    db.session.add(conn)
    db.session.commit()
    return conn


def test_the_idle_check_runs_hourly():
    job = next(j for j in HUB_PERIODIC_JOBS if j.name == "hub.connections.refresh_idle_connections")
    assert job.interval <= timedelta(hours=1)


def test_a_connection_idle_past_its_providers_delay_is_refreshed_and_no_other(app, make_user, short_lived):
    due = connection(make_user, "Due", refreshed_hours_ago=7)
    fresh = connection(make_user, "Fresh", refreshed_hours_ago=5)
    assert refresh_idle_connections() == {"refreshed": 1, "revoked": 0, "failed": 0}
    assert short_lived == ["rt-Due"]
    db.session.expire_all()
    assert json.loads(db.session.get(Connection, due.id).credentials)["refresh_token"] == "rt-1"
    assert json.loads(db.session.get(Connection, fresh.id).credentials)["refresh_token"] == "rt-Fresh"
    # Refreshed now: the next hourly runs leave it alone until it is idle again.
    assert refresh_idle_connections()["refreshed"] == 0
