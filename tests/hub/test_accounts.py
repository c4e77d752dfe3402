"""What an admin needs to revoke access: passwords, deactivation, API tokens with expiry."""
from __future__ import annotations

import re
from datetime import timedelta

from hub.extensions import db
from hub.models import ApiToken, AuditEvent, User, utcnow
from tests.conftest import csrf_token, sign_in

PAGE = "/settings/integrations"
API = "/api/v1/me"


def signed_in(client) -> bool:
    return client.get(PAGE).status_code == 200


def bearer(app, token: str) -> int:
    return app.test_client().get(API, headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_user_changes_their_password_and_their_other_sessions_end(app, client, admin):
    sign_in(client, admin.email)
    elsewhere = app.test_client()
    sign_in(elsewhere, admin.email)
    token = csrf_token(client, "/account")
    form = {"csrf_token": token, "current_password": "wrong", "new_password": "brand new password",
            "confirm_password": "brand new password"}
    assert client.post("/account/password", data=form).status_code == 400
    form["current_password"] = "correct horse battery"
    assert client.post("/account/password", data={**form, "confirm_password": "other"}).status_code == 400
    assert client.post("/account/password", data={**form, "new_password": "short",
                                                   "confirm_password": "short"}).status_code == 400
    same = client.post("/account/password", data={**form, "new_password": "correct horse battery",
                                                  "confirm_password": "correct horse battery"})
    assert same.status_code == 400 and "is the one you have now" in same.get_data(as_text=True)  # #40, 14
    response = client.post("/account/password", data=form)
    assert response.status_code == 302
    assert signed_in(client) and not signed_in(elsewhere)
    again = app.test_client()
    assert again.post("/login", data={"csrf_token": csrf_token(again), "email": admin.email,
                                      "password": "correct horse battery"}).status_code == 401
    sign_in(again, admin.email, "brand new password")


def test_the_cli_sets_a_password_and_ends_the_users_sessions(app, client, admin, runner):
    sign_in(client, admin.email)
    result = runner.invoke(args=["users", "set-password", "--email", admin.email,
                                 "--password", "set by the cli"])
    assert result.exit_code == 0, result.output
    assert "1 session(s) ended" in result.output
    assert not signed_in(client)
    sign_in(app.test_client(), admin.email, "set by the cli")


def test_a_deactivated_user_is_signed_out_and_their_tokens_refused_until_reactivated(app, client, admin,
                                                                                     runner):
    sign_in(client, admin.email)
    token, plaintext = ApiToken.issue(admin, "script")
    db.session.add(token)
    db.session.commit()
    assert bearer(app, plaintext) == 200
    assert runner.invoke(args=["users", "deactivate", "--email", admin.email]).exit_code == 0
    assert not signed_in(client) and bearer(app, plaintext) == 401
    refused = app.test_client()
    assert refused.post("/login", data={"csrf_token": csrf_token(refused), "email": admin.email,
                                        "password": "correct horse battery"}).status_code == 401
    listed = runner.invoke(args=["users", "list"]).output
    assert re.search(rf"{re.escape(admin.email)}\s+Acme\s+admin\s+deactivated", listed)
    assert runner.invoke(args=["users", "reactivate", "--email", admin.email]).exit_code == 0
    assert bearer(app, plaintext) == 200
    sign_in(app.test_client(), admin.email)


def test_api_tokens_are_made_listed_used_and_revoked_from_the_account_page(app, client, admin):
    sign_in(client, admin.email)
    page = client.post("/account/tokens", data={"csrf_token": csrf_token(client, "/account"),
                                                "name": "reporting", "days": "30"}).get_data(as_text=True)
    plaintext = re.search(r'<pre id="new-token">([^<]+)</pre>', page).group(1)
    stored = db.session.scalar(db.select(ApiToken))
    assert stored.token_hash == ApiToken.hash(plaintext) and plaintext not in str(stored.__dict__)
    created = db.session.scalar(db.select(AuditEvent).filter_by(action="api_token.created"))
    assert created.target == f"api_token:{stored.id}"
    assert timedelta(days=29) < stored.expires_at - utcnow() <= timedelta(days=30)
    assert plaintext not in client.get("/account").get_data(as_text=True)  # shown once
    assert bearer(app, plaintext) == 200
    db.session.expire_all()
    assert db.session.get(ApiToken, stored.id).last_used_at is not None
    assert "never" not in client.get("/account").get_data(as_text=True).split('id="token-')[1].split("</tr>")[0]
    response = client.post(f"/account/tokens/{stored.id}/revoke", data={"csrf_token": csrf_token(client, "/account")})
    assert response.status_code == 302
    assert bearer(app, plaintext) == 401  # at once
    assert "revoked" in client.get("/account").get_data(as_text=True)
    bad = client.post("/account/tokens", data={"csrf_token": csrf_token(client, "/account"), "days": "9999"})
    assert bad.status_code == 400


def test_an_expired_token_gets_401_and_another_users_token_cannot_be_revoked(app, client, admin, make_user):
    other = make_user(role="member", email="other@example.com")
    token, plaintext = ApiToken.issue(other, "theirs")
    db.session.add(token)
    db.session.commit()
    sign_in(client, admin.email)
    token_form = {"csrf_token": csrf_token(client, "/account")}
    assert client.post(f"/account/tokens/{token.id}/revoke", data=token_form).status_code == 404
    assert client.post(f"/account/tokens/{2**64}/revoke", data=token_form).status_code == 404
    assert bearer(app, plaintext) == 200
    token.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert bearer(app, plaintext) == 401


def test_the_cli_lists_and_revokes_tokens(app, admin, runner):
    made = runner.invoke(args=["api-tokens", "create", "--email", admin.email, "--name", "ci", "--days", "365"])
    plaintext = made.output.strip()
    token = db.session.scalar(db.select(ApiToken))
    listed = runner.invoke(args=["api-tokens", "list"]).output
    assert f"{token.id}\t{admin.email}\tci\tactive" in listed and plaintext not in listed
    assert runner.invoke(args=["api-tokens", "revoke", "--id", str(token.id)]).exit_code == 0
    assert bearer(app, plaintext) == 401
    assert "revoked" in runner.invoke(args=["api-tokens", "list", "--email", admin.email]).output
    assert db.session.scalar(db.select(User)).active


def _new_token(client, name: str) -> str:
    page = client.post("/account/tokens", data={"csrf_token": csrf_token(client, "/account"),
                                                "name": name, "days": "30"}).get_data(as_text=True)
    return re.search(r'<pre id="new-token">([^<]+)</pre>', page).group(1)


def test_api_tokens_end_with_a_password_change_or_sign_out_everywhere_only_when_asked(app, client, admin):
    """Issue #39, 10, decided: tokens are for scripts and are not sessions. The account page says
    they survive, and both steps offer to revoke them at once (ticked on "Sign out everywhere")."""
    sign_in(client, admin.email)
    kept, ended = _new_token(client, "kept"), _new_token(client, "ended")
    page = client.get("/account").get_data(as_text=True)
    assert "a token keeps working after you sign out, sign out everywhere or change your password" in page
    assert 'id="password_revoke_tokens"> Also revoke my API tokens (2 active)' in page
    assert 'id="everywhere_revoke_tokens" checked> Also revoke my API tokens (2 active)' in page
    form = {"csrf_token": csrf_token(client, "/account"), "current_password": "correct horse battery",
            "new_password": "brand new password", "confirm_password": "brand new password"}
    client.post("/account/password", data=form)  # box not ticked: tokens keep working
    assert bearer(app, kept) == 200 and bearer(app, ended) == 200
    form.update(csrf_token=csrf_token(client, "/account"), current_password="brand new password",
                new_password="another new password", confirm_password="another new password", revoke_tokens="1")
    client.post("/account/password", data=form)
    assert bearer(app, kept) == 401 and bearer(app, ended) == 401
    revoked = db.session.scalars(db.select(AuditEvent).filter_by(action="api_token.revoked")).all()
    assert len(revoked) == 2

    # Sign out everywhere: without the box, the token stays; with it, it ends with the sessions.
    sign_in(client, admin.email, "another new password")
    script = _new_token(client, "script")
    client.post("/account/sign-out-everywhere", data={"csrf_token": csrf_token(client, "/account")})
    assert bearer(app, script) == 200
    sign_in(client, admin.email, "another new password")
    response = client.post("/account/sign-out-everywhere", data={"csrf_token": csrf_token(client, "/account"),
                                                                 "revoke_tokens": "1"})
    assert response.status_code == 302 and bearer(app, script) == 401
    assert "Your API tokens were revoked (1)." in client.get("/login").get_data(as_text=True)


def test_reloading_the_page_that_shows_a_new_token_makes_no_second_one(app, client, admin):
    """Issue #40, 11: the browser's reload sent the form again and silently made a second token."""
    sign_in(client, admin.email)
    page = client.get("/account").get_data(as_text=True)
    form = {"csrf_token": csrf_token(client, "/account"), "name": "reporting", "days": "30",
            "form_id": re.search(r'name="form_id" value="([^"]+)"', page).group(1)}
    first = client.post("/account/tokens", data=form)
    assert first.status_code == 200 and 'id="new-token"' in first.get_data(as_text=True)
    again = client.post("/account/tokens", data=form)  # what a reload does
    assert again.status_code == 409 and "That token was made already" in again.get_data(as_text=True)
    assert 'id="new-token"' not in again.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(ApiToken.id))) == 1
    fresh = re.search(r'name="form_id" value="([^"]+)"', client.get("/account").get_data(as_text=True)).group(1)
    assert fresh != form["form_id"]
    assert client.post("/account/tokens", data={**form, "form_id": fresh}).status_code == 200  # a new form: a new token
