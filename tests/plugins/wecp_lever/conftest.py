"""Fixtures for the Lever flow: a sandbox, a connected organization, a test linked to a posting."""
from __future__ import annotations

import pytest

from hub.extensions import db
from tests.conftest import sign_in

CLIENT_ID, CLIENT_SECRET = "wecp-hub-test", "test-client-secret"
CALLBACK = "http://hub.test/integrations/wecp_lever/connect/callback"
ACCOUNT = "acme"
BACKEND = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"      # owner Olivia, hiring manager Hank
FRONTEND = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0fa"     # owner deactivated, hiring manager Hank
CLOSED = "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0fc"
ASSESSMENT = "8a2d4b6c-1e3f-4a5b-9c7d-0e1f2a3b4c5d"
SCREEN = "5d1a2b3c-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
NEW = "applicant-new"
OLIVIA = "b1f2c3d4-0000-4000-8000-000000000001"
HANK = "b1f2c3d4-0000-4000-8000-000000000002"


@pytest.fixture
def fresh_sandbox(sandbox):
    sandbox.admin.reset()
    sandbox.admin.add_client(CLIENT_ID, CLIENT_SECRET, [CALLBACK])
    return sandbox


@pytest.fixture
def connected(pg_app, fresh_sandbox):
    """An admin signed in, Lever connected through the real consent flow, the webhook registered."""
    return _connect(pg_app, fresh_sandbox)


@pytest.fixture
def connected_on_each_database(app, fresh_sandbox):
    """``connected``, on PostgreSQL and on SQLite (the ``app`` fixture's two databases)."""
    return _connect(app, fresh_sandbox)


def _connect(app, fresh_sandbox):
    from hub.auth import create_user
    from tests.plugins.wecp_lever.test_connections import connect, the_connection

    admin = create_user("Acme", "admin@acme-wecp.example", "correct horse battery", "admin")
    db.session.commit()
    client = app.test_client()
    sign_in(client, admin.email)
    connect(client, fresh_sandbox)
    conn = the_connection()
    assert conn.status == "Active"
    return client, conn


def make_test(org_id: int, title: str = "Backend screen"):
    """A two-question test (pass mark 50%); answer option 0 to each to score 100%."""
    from hub.assessments.schemas import AssessmentTestSchema
    from hub.assessments.services import save_test

    test = save_test(org_id, AssessmentTestSchema().load({
        "title": title, "description": "", "pass_mark": 50, "time_limit_minutes": 30, "valid_days": 7,
        "questions": [{"text": f"Q{i}", "kind": "single", "options": ["right", "wrong"], "correct": [0]}
                      for i in range(2)]}))
    db.session.commit()
    return test
