"""The Lever plugin's settings: environment presets and what production refuses."""
import pytest

from hub import create_app
from hub.config import ConfigError
from tests.hub.test_config import SAFE as HUB_SAFE

SAFE = {**HUB_SAFE, "HUB_PLUGINS": "plugins.wecp_lever", "LEVER_ENV": "production",
        "LEVER_CLIENT_ID": "client-id", "LEVER_CLIENT_SECRET": "client-secret"}


@pytest.mark.parametrize("changes, setting", [
    ({"LEVER_CLIENT_SECRET": ""}, "LEVER_CLIENT_SECRET"),
    ({"LEVER_CLIENT_ID": "  "}, "LEVER_CLIENT_ID"),
    ({"LEVER_ENV": "local", "LEVER_SANDBOX_URL": "http://127.0.0.1:5001"}, "LEVER_ENV"),
    # Issue #39, 6: endpoints over plain http or on this machine, with LEVER_ENV=production.
    ({"LEVER_TOKEN_URL": "http://auth.lever.co/oauth/token"}, "LEVER_TOKEN_URL must be an https"),
    ({"LEVER_API_BASE_URL": "https://127.0.0.1:5001/v1"}, "LEVER_API_BASE_URL names a loopback"),
    ({"LEVER_AUTHORIZE_URL": "https://localhost/authorize"}, "LEVER_AUTHORIZE_URL names a local host"),
    ({"LEVER_API_BASE_URL": "https://[::1]/v1"}, "LEVER_API_BASE_URL names a loopback"),
    ({"LEVER_AUDIENCE": "https://10.0.0.5/v1/"}, "LEVER_AUDIENCE names a loopback or private"),
    ({"LEVER_ENV": "sandbox", "LEVER_APP_URL": "http://hire.sandbox.lever.co"}, "LEVER_APP_URL"),
])
def test_production_refuses_what_would_fail_silently_and_names_the_setting(changes, setting):
    with pytest.raises(ConfigError, match=setting):
        create_app({**SAFE, **changes})


def test_production_starts_with_lever_configured():
    assert create_app(SAFE).config["LEVER_CLIENT_ID"] == "client-id"


def test_lever_environment_presets(monkeypatch):
    app = create_app({**SAFE, "LEVER_ENV": "sandbox"})
    assert app.config["LEVER_AUTHORIZE_URL"] == "https://sandbox-lever.auth0.com/authorize"
    assert app.config["LEVER_AUDIENCE"] == "https://api.sandbox.lever.co/v1/"
    prod = create_app(SAFE)
    assert prod.config["LEVER_API_BASE_URL"] == "https://api.lever.co/v1"
    monkeypatch.setenv("LEVER_API_BASE_URL", "https://lever.proxy.internal/v1")
    assert create_app(SAFE).config["LEVER_API_BASE_URL"] == "https://lever.proxy.internal/v1"




def test_a_job_reads_an_organization_s_settings_in_one_query_and_sees_its_own_changes(app):
    """A note reads four settings: one query for all of them; a change made with ``set_setting``
    is seen at once (the copy is dropped), and a new job or request reads afresh."""
    from flask import g
    from sqlalchemy import event

    from hub.extensions import db
    from hub.models import Organization
    from hub.settings import get_setting, set_setting

    org = Organization(name="Settings")
    db.session.add(org)
    db.session.commit()
    org_id = org.id
    set_setting(org_id, "wecp_lever", "review_from", 40)
    db.session.commit()
    queries = []

    def count(*args, **kwargs):
        queries.append(args[2])
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        values = [get_setting(org_id, "wecp_lever", key)
                  for key in ("review_from", "review_to", "tag_results", "advance_on_pass_stage")]
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert values[0] == 40 and len(queries) == 1
    set_setting(org_id, "wecp_lever", "review_from", 55)
    assert get_setting(org_id, "wecp_lever", "review_from") == 55
    db.session.commit()
    with app.app_context():  # another job changes it
        set_setting(org_id, "wecp_lever", "review_from", 60)
        db.session.commit()
    with app.app_context():  # the next job reads afresh
        assert "hub_settings" not in g
        assert get_setting(org_id, "wecp_lever", "review_from") == 60
