from hub.extensions import db
from hub.models import ApiToken, AuditEvent, Connection
from tests.conftest import csrf_token, sign_in


def test_sign_in_with_one_generic_error(client, admin):
    token = csrf_token(client)
    wrong = client.post("/login", data={"email": admin.email, "password": "nope-nope", "csrf_token": token})
    unknown = client.post("/login", data={"email": "ghost@example.com", "password": "nope-nope",
                                          "csrf_token": token})
    assert wrong.status_code == unknown.status_code == 401
    assert b"Email or password is incorrect." in wrong.data and b"Email or password is incorrect." in unknown.data
    sign_in(client, admin.email)
    assert client.get("/settings/integrations").status_code == 200


def test_pages_require_sign_in(client):
    response = client.get("/settings/integrations")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.get("/api/v1/integrations").status_code == 401


def test_login_without_csrf_token_is_refused(client, admin):
    response = client.post("/login", data={"email": admin.email, "password": "correct horse battery"})
    assert response.status_code == 400


def test_next_parameter_cannot_redirect_off_site(client, admin):
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        token = csrf_token(client)
        response = client.post("/login?next=" + target, data={
            "email": admin.email, "password": "correct horse battery", "csrf_token": token})
        assert response.status_code == 302, (target, response.get_data(as_text=True))
        assert "evil.example" not in response.headers["Location"]


def test_password_change_ends_other_sessions(client, admin):
    sign_in(client, admin.email)
    admin.set_password("a whole new password")
    db.session.commit()
    assert client.get("/settings/integrations").status_code == 302


def test_api_token_is_stored_hashed_and_authenticates(app, admin, runner):
    result = runner.invoke(args=["api-tokens", "create", "--email", admin.email])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    stored = db.session.scalar(db.select(ApiToken))
    assert stored.token_hash != token and token not in stored.token_hash
    client = app.test_client()
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json["email"] == admin.email
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer hub_wrong"}).status_code == 401


def test_member_of_one_organization_cannot_read_another(app, make_user):
    alice = make_user(org="Org A", role="member", email="alice@a.example")
    bob = make_user(org="Org B", role="admin", email="bob@b.example")
    conn = Connection(organization_id=bob.organization_id, plugin_key="tiny_example", provider="tiny",
                      external_account_name="Org B's account")
    conn.credentials = "{}"
    from hub.models import utcnow
    conn.connected_at = conn.setup_completed_at = utcnow()
    db.session.add(conn)
    db.session.commit()
    client = app.test_client()
    sign_in(client, alice.email)
    cards = client.get("/api/v1/integrations").json["data"]
    assert cards and {c["status"] for c in cards} == {"Not connected"}  # one card per loaded plugin
    assert b"Org B" not in client.get("/settings/integrations").data


def test_sign_in_attempts_are_rate_limited(app, client, admin):
    app.config["HUB_LOGIN_ATTEMPTS_PER_MINUTE"] = 3
    token = csrf_token(client)
    for _ in range(3):
        client.post("/login", data={"email": admin.email, "password": "bad-password", "csrf_token": token})
    response = client.post("/login", data={"email": admin.email, "password": "correct horse battery",
                                           "csrf_token": token})
    assert response.status_code == 401 and b"Too many sign-in attempts" in response.data


def test_users_create_cli_and_audit(app, runner):
    result = runner.invoke(args=["users", "create", "--org", "Acme", "--email", "Ann@Acme.example",
                                 "--password", "long enough pw", "--role", "admin"])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(db.select(AuditEvent).filter_by(action="user.created")) is not None
    dup = runner.invoke(args=["users", "create", "--org", "Acme", "--email", "ann@acme.example",
                              "--password", "long enough pw"])
    assert dup.exit_code != 0 and "exists already" in dup.output
