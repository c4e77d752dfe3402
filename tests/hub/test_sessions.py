"""Server-side sessions (hub.sessions): an opaque cookie, data in Redis, ended at once everywhere."""
from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import requests

from hub.extensions import db, get_redis
from hub.sessions import _key
from sandboxes.services import free_port
from sandboxes.stack import ROOT, gunicorn_argv, wait_http
from tests.conftest import csrf_token, sign_in
from tests.workers import worker_env

PAGE = "/settings/integrations"
_SID_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def signed_in(client) -> bool:
    return client.get(PAGE).status_code == 200


def copy_of(app, client):
    """Another browser holding a copy of ``client``'s session cookie (a replayed cookie)."""
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    return other


def test_the_cookie_is_an_opaque_id_and_the_data_is_in_redis(app, client, admin):
    sign_in(client, admin.email)
    sid = client.get_cookie("session").value
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sid)  # 256 random bits, nothing else
    assert not get_redis().exists(f"hub:session:{sid}")  # stored under a hash of the id only
    data = json.loads(get_redis().get(_key(sid)))
    assert data["user_id"] == admin.id and admin.password_hash not in json.dumps(data)


def test_a_cookie_replayed_after_sign_out_gets_the_sign_in_page(app, client, admin):
    sign_in(client, admin.email)
    replay = copy_of(app, client)
    assert signed_in(replay)
    client.post("/logout", data={"csrf_token": csrf_token(client, PAGE)})
    response = replay.get(PAGE)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_sign_out_everywhere_ends_every_session_of_the_user_only(app, client, admin, make_user):
    sign_in(client, admin.email)
    laptop = app.test_client()
    sign_in(laptop, admin.email)
    colleague = app.test_client()
    sign_in(colleague, make_user(role="member", email="colleague@example.com").email)
    page = client.get("/account").get_data(as_text=True)
    assert "Sign out everywhere" in page
    response = client.post("/account/sign-out-everywhere", data={"csrf_token": csrf_token(client, "/account")})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert not signed_in(client) and not signed_in(laptop)
    assert signed_in(colleague)


def test_a_password_change_ends_the_sessions_made_with_the_old_one(app, client, admin):
    sign_in(client, admin.email)
    admin.set_password("a whole new password")
    db.session.commit()
    assert not signed_in(client)


def test_sessions_end_when_idle_and_after_their_absolute_lifetime(app, client, admin):
    sign_in(client, admin.email)
    key = _key(client.get_cookie("session").value)
    ttl = get_redis().ttl(key)
    assert 0 < ttl <= app.config["HUB_SESSION_IDLE_SECONDS"]  # idle: Redis forgets it
    # In use, but begun longer ago than the absolute lifetime: ended.
    data = json.loads(get_redis().get(key))
    data["_created"] = time.time() - app.config["HUB_SESSION_MAX_SECONDS"] - 1
    get_redis().set(key, json.dumps(data), keepttl=True)
    assert not signed_in(client)
    assert not get_redis().exists(key)


@pytest.mark.slow
def test_another_web_process_sees_the_sign_out_at_once(pg_app):
    """A second hub process (gunicorn) shares the sessions: it honours the cookie, then its end."""
    from hub.auth import create_user

    admin = create_user("Acme", "admin@acme.example", "correct horse battery", "admin")
    db.session.commit()
    port = free_port()
    proc = subprocess.Popen(gunicorn_argv(port, 1, threads=1), cwd=ROOT, env=worker_env(pg_app),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", proc=proc)
        client = pg_app.test_client()
        sign_in(client, admin.email)
        cookie = {"session": client.get_cookie("session").value}
        other = requests.get(url + PAGE, cookies=cookie, allow_redirects=False, timeout=10)
        assert other.status_code == 200
        client.post("/logout", data={"csrf_token": csrf_token(client, PAGE)})
        other = requests.get(url + PAGE, cookies=cookie, allow_redirects=False, timeout=10)
        assert other.status_code == 302 and "/login" in other.headers["Location"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_ten_thousand_anonymous_page_views_leave_no_session_in_redis(pg_app):
    """Issue #39, 1: a visitor who has not signed in costs Redis nothing. Each view is a new
    client (no cookie), as a flood of anonymous requests is; the sign-in form still works."""
    redis = get_redis()
    before = redis.dbsize()
    for _ in range(10_000):
        response = pg_app.test_client().get("/login")
        assert response.status_code == 200
    assert redis.dbsize() - before <= 5  # a few counters at most (none today), never one per view
    assert not list(redis.scan_iter("hub:session:*"))
    assert "session=" in response.headers["Set-Cookie"]  # the CSRF secret rides in the cookie


def test_the_anonymous_cookie_carries_the_sign_in_form_and_never_a_user(app, client, admin):
    token = csrf_token(client)
    anonymous = client.get_cookie("session").value
    assert not _SID_SHAPE.fullmatch(anonymous) and not list(get_redis().scan_iter("hub:session:*"))
    # Altered, it is a new visitor: the form's token no longer matches (400), nobody signed in.
    client.set_cookie("session", anonymous[:-2] + ("AA" if anonymous[-2:] != "AA" else "BB"))
    response = client.post("/login", data={"email": admin.email, "password": "correct horse battery",
                                           "csrf_token": token})
    assert response.status_code == 400 and not list(get_redis().scan_iter("hub:session:*"))
    # A cookie signed with the hub's key that names a user opens nothing either.
    from hub.sessions import _signed

    client.set_cookie("session", _signed(app).dumps({"user_id": admin.id, "pw": "x"}))
    assert not signed_in(client)
    # Signing in moves the session to Redis under a fresh id; signing out brings it back to a cookie.
    client.delete_cookie("session")
    sign_in(client, admin.email)
    sid = client.get_cookie("session").value
    assert _SID_SHAPE.fullmatch(sid) and get_redis().exists(_key(sid))
    client.post("/logout", data={"csrf_token": csrf_token(client, PAGE)})
    assert not get_redis().exists(_key(sid)) and not list(get_redis().scan_iter("hub:session:*"))
    assert "You are signed out." in client.get("/login").get_data(as_text=True)
