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


