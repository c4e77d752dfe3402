import base64

import pytest

from hub import create_app
from hub.config import ConfigError
from tests.conftest import TEST_KEYS

SAFE = {
    "HUB_ENV": "production",
    "SECRET_KEY": "9aQ2-vLx7RkP0sWmZ3cT8yHnB4eJ6uFgD1iO5",
    "HUB_ENCRYPTION_KEYS": TEST_KEYS[0],
    "HUB_BASE_URL": "https://hub.example",
    "DATABASE_URL": "postgresql://hub@db.invalid/hub",
    "HUB_TRUSTED_HOSTS": "hub.example",
    "SMTP_URL": "smtp://mail.invalid:587",
    "HUB_PLUGINS": "tests.plugins.tiny_example",
    "TINY_API_KEY": "tiny-key",
}


@pytest.mark.parametrize("changes, setting", [
    ({"SMTP_URL": ""}, "SMTP_URL"),
    ({"HUB_ENCRYPTION_KEYS": "not base64!"}, "HUB_ENCRYPTION_KEYS: key 1"),
    ({"HUB_ENCRYPTION_KEYS": base64.urlsafe_b64encode(bytes(32)).decode()}, "not random"),
    ({"HUB_ENCRYPTION_KEYS": f"{TEST_KEYS[0]},{base64.urlsafe_b64encode(b'ab' * 16).decode()}"}, "key 2"),
    ({"HUB_ENCRYPTION_KEYS": base64.urlsafe_b64encode(b"short").decode()}, "32 bytes"),
    ({"SECRET_KEY": "x" * 40}, "SECRET_KEY has too little variety"),
    ({"SECRET_KEY": "abcabcabcabcabcabcabcabcabcabcabcabc"}, "SECRET_KEY"),
    ({"TINY_API_KEY": " "}, "TINY_API_KEY"),  # a plugin's own problems stop the hub too
    ({"HUB_TRUSTED_HOSTS": ""}, "HUB_TRUSTED_HOSTS"),
])
def test_production_refuses_what_would_fail_silently_and_names_the_setting(changes, setting):
    with pytest.raises(ConfigError, match=setting):
        create_app({**SAFE, **changes})


def test_production_without_smtp_is_an_explicit_logged_choice(caplog):
    app = create_app({**SAFE, "SMTP_URL": "", "HUB_MAIL_OUTBOX_ONLY": "1"})
    assert app.config["PRODUCTION"]
    assert "HUB_MAIL_OUTBOX_ONLY=1 in production" in caplog.text


def test_production_refuses_the_development_secret():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({**SAFE, "SECRET_KEY": "dev-insecure-secret-key"})


def test_production_refuses_missing_encryption_keys():
    with pytest.raises(ConfigError, match="HUB_ENCRYPTION_KEYS"):
        create_app({**SAFE, "HUB_ENCRYPTION_KEYS": ""})


def test_production_refuses_sqlite_and_plain_http():
    with pytest.raises(ConfigError) as info:
        create_app({**SAFE, "DATABASE_URL": "sqlite:///x.db", "HUB_BASE_URL": "http://hub.example"})
    assert "PostgreSQL" in str(info.value) and "https" in str(info.value)


def test_production_sets_safe_cookie_and_body_limits():
    app = create_app(SAFE)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["MAX_CONTENT_LENGTH"] == 1048576


def test_trusted_hosts_reject_other_hosts():
    app = create_app({**SAFE, "HUB_TRUSTED_HOSTS": "hub.example"})
    client = app.test_client()
    assert client.get("/healthz", headers={"Host": "hub.example"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400


def test_security_headers_on_every_page(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"]


def test_health_and_readiness(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json == {"status": "ok"}  # details: operators only
