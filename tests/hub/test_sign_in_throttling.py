"""Sign-in throttling that bounds what it stores and cannot be turned against the real user."""
from __future__ import annotations

import pytest

from hub import auth
from hub.extensions import get_redis
from tests.conftest import csrf_token

ATTACKER, USER = "203.0.113.66", "198.51.100.7"
# Enough to show that nothing stored grows with the attempts (a key that did would pass 1 KB).
ATTEMPTS = 1_000


def attempt(client, email: str, password: str, address: str):
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": address})


def test_the_real_user_signs_in_while_an_attacker_hammers_their_account(app, client, admin):
    attacker = app.test_client()
    for i in range(3 * app.config["HUB_LOGIN_ATTEMPTS_PER_MINUTE"]):
        attempt(attacker, admin.email, f"guess {i}", ATTACKER)
    refused = attempt(attacker, admin.email, "correct horse battery", ATTACKER)
    assert refused.status_code == 401 and b"Too many sign-in attempts" in refused.data
    assert attempt(client, admin.email, "correct horse battery", USER).status_code == 302


def test_one_address_guessing_many_accounts_is_stopped(app, client, admin):
    app.config["HUB_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE"] = 5
    for i in range(5):
        attempt(client, f"someone{i}@example.com", "guess", ATTACKER)
    assert b"Too many sign-in attempts" in attempt(client, admin.email, "correct horse battery", ATTACKER).data
    assert attempt(app.test_client(), admin.email, "correct horse battery", USER).status_code == 302


def test_successful_sign_ins_do_not_spend_the_budget(app, admin):
    for _ in range(app.config["HUB_LOGIN_ATTEMPTS_PER_MINUTE"] + 2):
        assert attempt(app.test_client(), admin.email, "correct horse battery", USER).status_code == 302


@pytest.mark.slow
def test_a_thousand_attempts_with_200_kb_emails_leave_no_redis_key_over_1_kb(pg_app, monkeypatch):
    # What is stored is the question here, not the password check's cost: it is skipped.
    monkeypatch.setattr(auth, "check_password_hash", lambda *args: False)
    pg_app.config.update(HUB_LOGIN_ATTEMPTS_PER_MINUTE=10**9, HUB_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE=10**9)
    client = pg_app.test_client()
    token = csrf_token(client)
    big = "a" * (200 * 1024)
    for i in range(ATTEMPTS):
        response = client.post("/login", data={"email": f"{i}{big}@example.com", "password": big[:300],
                                               "csrf_token": token},
                               environ_base={"REMOTE_ADDR": f"10.{i % 250}.{i // 250}.1"})
        assert response.status_code == 401
    redis = get_redis()
    sizes = {key: redis.memory_usage(key) for key in redis.scan_iter("*", count=1000)}
    assert any(key.startswith(b"hub:login:") for key in sizes)
    assert max(sizes.values()) < 1024, max(sizes.items(), key=lambda kv: kv[1])[0]
    assert all(len(key) < 120 for key in sizes)


def test_known_and_unknown_emails_cost_one_password_check_each(app, client, admin, monkeypatch):
    """Same work, so the same time, whether the account exists (no enumeration by timing)."""
    from hub import models

    calls = []
    real = models.check_password_hash

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(models, "check_password_hash", counting)
    monkeypatch.setattr(auth, "check_password_hash", counting)
    for email in (admin.email, "nobody@example.com", "x" * 400 + "@example.com"):
        calls.clear()
        assert attempt(client, email, "wrong password", USER).status_code == 401
        assert len(calls) == 1, email


def test_behind_a_trusted_proxy_the_address_is_the_client_s_and_otherwise_the_header_is_ignored(app, admin):
    app.config["HUB_LOGIN_ATTEMPTS_PER_MINUTE"] = 2
    spoofing = app.test_client()
    for i in range(2):
        spoofing.post("/login", data={"email": admin.email, "password": "x", "csrf_token": csrf_token(spoofing)},
                      headers={"X-Forwarded-For": f"192.0.2.{i}"}, environ_base={"REMOTE_ADDR": ATTACKER})
    # Without trusted proxies a forged X-Forwarded-For changes nothing: the budget is spent.
    response = spoofing.post("/login", headers={"X-Forwarded-For": "192.0.2.99"},
                             environ_base={"REMOTE_ADDR": ATTACKER},
                             data={"email": admin.email, "password": "correct horse battery",
                                   "csrf_token": csrf_token(spoofing)})
    assert b"Too many sign-in attempts" in response.data


def test_a_trusted_proxy_count_takes_the_client_address_from_the_proxy(database_url, redis_server):
    from tests.conftest import _make_app

    proxied = _make_app(database_url, redis_server, {"HUB_TRUSTED_PROXIES": 1})
    seen = []
    proxied.before_request(lambda: seen.append(__import__("flask").request.remote_addr))
    proxied.test_client().get("/healthz", headers={"X-Forwarded-For": "192.0.2.44"},
                              environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert seen == ["192.0.2.44"]
