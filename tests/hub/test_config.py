import base64

import pytest

from hub import create_app
from hub.config import DEV_ENCRYPTION_KEY, ConfigError, not_random
from tests.conftest import TEST_KEYS


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()

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
    # Issue #39, 3: the development key in disguise (quoted as docker --env-file passes it,
    # with junk after it, another spelling of the same bytes), and keys that are not strict base64.
    ({"HUB_ENCRYPTION_KEYS": DEV_ENCRYPTION_KEY}, "key 1 is the published development key"),
    ({"HUB_ENCRYPTION_KEYS": f'"{DEV_ENCRYPTION_KEY}"'}, "key 1 is not .*remove the quotes"),
    ({"HUB_ENCRYPTION_KEYS": f"'{DEV_ENCRYPTION_KEY}'"}, "key 1 is not .*remove the quotes"),
    ({"HUB_ENCRYPTION_KEYS": DEV_ENCRYPTION_KEY[:-2] + "E=."}, "key 1 is not 32 bytes written as 43"),
    ({"HUB_ENCRYPTION_KEYS": DEV_ENCRYPTION_KEY[:-2] + "F="}, "key 1 is not in its one canonical"),
    ({"HUB_ENCRYPTION_KEYS": DEV_ENCRYPTION_KEY[:-1]}, "key 1 is not 32 bytes written as 43"),
    ({"HUB_ENCRYPTION_KEYS": f"{TEST_KEYS[0]}, {DEV_ENCRYPTION_KEY} "}, "key 2 is the published"),
    ({"HUB_ENCRYPTION_KEYS": f'"{TEST_KEYS[0]}"'}, "key 1 is not .*remove the quotes"),  # even a good key
    ({"HUB_ENCRYPTION_KEYS": TEST_KEYS[0] + "."}, "key 1 is not 32 bytes written as 43"),
    ({"HUB_ENCRYPTION_KEYS": TEST_KEYS[0].replace("-", "+").replace("_", "/")}, "key 1 is not 32 bytes"),
    # Issue #39, 4: what no generator makes (runs, repeats, low entropy), with how to make one.
    ({"SECRET_KEY": "abcdefghijklmnopqrstuvwxyz012345"}, "SECRET_KEY is not random: it holds a run.*token_urlsafe"),
    ({"SECRET_KEY": "correcthorsebatterystaple-correcthorse"}, "SECRET_KEY is not random: it repeats"),
    ({"SECRET_KEY": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa9876543210"},
     "SECRET_KEY is not random"),
    ({"SECRET_KEY": "aB" * 30 + "cDeFgHiJkL"}, "SECRET_KEY is not random"),
    ({"HUB_ENCRYPTION_KEYS": _b64(bytes(range(32)))}, "key 1 is not random: it holds a run"),
    ({"HUB_ENCRYPTION_KEYS": _b64(bytes(range(200, 208)) * 4)}, "key 1 is not random"),
    ({"HUB_ENCRYPTION_KEYS": _b64(bytes(range(100, 116)) * 2)}, "key 1 is not random"),
    ({"HUB_ENCRYPTION_KEYS": _b64(b"test-key-1-0123456789abcdefghijk")}, "key 1 is not random"),
    # Issue #39, 6: a way to send email that is no way at all.
    ({"SMTP_URL": "http://x"}, "SMTP_URL must be smtp://"),
    ({"SMTP_URL": "   "}, "SMTP_URL must be set"),
    ({"SMTP_URL": "smtp://"}, "SMTP_URL must be smtp://"),
    ({"SMTP_URL": "smtp://mail.example:twenty-five"}, "SMTP_URL has a port"),
])
def test_production_refuses_what_would_fail_silently_and_names_the_setting(changes, setting):
    with pytest.raises(ConfigError, match=setting):
        create_app({**SAFE, **changes})


def test_what_generators_make_is_accepted():
    """The randomness checks refuse no generated value (the thresholds' reason): 2,000 of each
    kind the error messages suggest, and hex secrets too."""
    import secrets

    from hub.config import _key_problem
    from hub.crypto import generate_key

    for _ in range(2000):
        assert _key_problem(generate_key()) is None
        for secret in (secrets.token_urlsafe(48), secrets.token_hex(32), secrets.token_hex(16)):
            assert not_random(secret, run=8, distinct=8, repeat=8) is None, secret
    assert create_app({**SAFE, "SECRET_KEY": secrets.token_hex(32),
                       "HUB_ENCRYPTION_KEYS": f"{generate_key()},{generate_key()}"}).config["PRODUCTION"]


@pytest.mark.parametrize("value", ["Production", "PRODUCTION", "production ", " production\n"])
def test_hub_env_is_read_whatever_its_case_and_spaces(value):
    """Issue #39, 5: "Production" ran development silently (the dev secret and key, no Secure)."""
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({**SAFE, "HUB_ENV": value, "SECRET_KEY": "dev-insecure-secret-key"})
    app = create_app({**SAFE, "HUB_ENV": value})
    assert app.config["PRODUCTION"] and app.config["SESSION_COOKIE_SECURE"]


@pytest.mark.parametrize("value", ["prod", "staging", "", "dev elopment"])
def test_an_unknown_hub_env_is_refused(value):
    with pytest.raises(ConfigError, match="HUB_ENV must be one of development, testing, production"):
        create_app({**SAFE, "HUB_ENV": value})


@pytest.mark.parametrize("value", [-1, "-1", "many", 11])
def test_a_trusted_proxy_count_that_is_not_a_count_is_refused_everywhere(value, monkeypatch):
    """Issue #39, 6: -1 took the client address from a header the caller writes (and one
    X-Forwarded-For entry raised a 500); refused in every environment."""
    monkeypatch.setenv("HUB_TRUSTED_PROXIES", str(value))
    for env in ("production", "development"):
        with pytest.raises(ConfigError, match="HUB_TRUSTED_PROXIES"):
            create_app({**SAFE, "HUB_ENV": env})


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
