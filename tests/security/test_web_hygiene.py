"""Web hygiene: CSRF, safe redirects, session cookies, security headers, sign-in limits, body limits."""
from __future__ import annotations

import pathlib
import re
from urllib.parse import quote, urljoin, urlsplit

import pytest

from hub import create_app
from hub.assessments.models import AssessmentTest
from hub.extensions import db
from hub.models import AuditEvent
from tests.conftest import _make_app, base_config, csrf_token, sign_in
from tests.security.conftest import PARTNER_EXAMPLE, api_token, form_token
from tests.security.test_roles import access_of, calls

ROOT = pathlib.Path(__file__).parents[2]
ONE_MIB = 1024 * 1024


# --- CSRF -------------------------------------------------------------------------------------

#: POST endpoints without our CSRF token: providers cannot send it, their signature is checked.
CSRF_EXEMPT = {"webhooks.receive"}


def test_csrf_required_on_every_state_changing_form(app, org_a, browser):
    """Every POST of the app, sent by a signed-in admin's browser without the CSRF token, is
    refused with 400 before it changes anything."""
    admin = browser(org_a.admin)
    checked = []
    for endpoint, method, url in calls(app, org_a):
        if method == "GET" or endpoint in CSRF_EXEMPT or access_of(endpoint) in ("operator", "partner"):
            # The job dashboard is 404 to an admin (its own test below); a partner route takes no
            # cookie at all, only its key (test_roles: a signed-in browser gets 401 there).
            continue
        response = admin.open(url, method=method, data={"anything": "1"})
        if response.status_code == 308:
            response = admin.open(response.headers["Location"], method=method, data={"anything": "1"})
        assert response.status_code == 400, (endpoint, url, response.status_code)
        checked.append(endpoint)
    assert {"auth.logout", "connections.connect", "connections.revoke", "candidate.submit",
            "assessments.new_test", "assessments_api.create_test", "webhooks.retry_failed"} <= set(checked)
    assert admin.get("/settings/integrations").status_code == 200  # still signed in


def test_csrf_required_on_every_job_dashboard_change(app, org_a, operator_client):
    """The dashboard's actions, sent by a signed-in operator without the CSRF token: 400."""
    checked = []
    for endpoint, method, url in calls(app, org_a):
        if method == "GET" or not endpoint.startswith("rq_dashboard."):
            continue
        response = operator_client.open(url, method=method, data={"anything": "1"})
        if response.status_code == 308:
            response = operator_client.open(response.headers["Location"], method=method)
        assert response.status_code == 400, (endpoint, url, response.status_code)
        checked.append(endpoint)
    assert "rq_dashboard.requeue_job_view" in checked


def test_csrf_required_on_cookie_api_calls(app, org_a, browser):
    admin = browser(org_a.admin)
    body = {"title": "Via cookie", "questions": [{"text": "?", "options": ["a", "b"], "correct": [0]}]}
    refused = admin.post("/api/v1/tests", json=body)
    assert refused.status_code == 400 and "CSRF" in refused.json["error"]
    wrong = admin.post("/api/v1/tests", json=body, headers={"X-CSRFToken": "not-the-token"})
    assert wrong.status_code == 400
    ok = admin.post("/api/v1/tests", json=body, headers={"X-CSRFToken": csrf_token(admin, "/tests")})
    assert ok.status_code == 201


def test_bearer_api_calls_need_no_csrf_and_ignore_the_cookie(app, org_a, org_b, browser):
    body = {"title": "Via token", "questions": [{"text": "?", "options": ["a", "b"], "correct": [0]}]}
    client = browser(org_b.admin)  # a session cookie of another organization is in the jar
    response = client.post("/api/v1/tests", json=body,
                           headers={"Authorization": f"Bearer {api_token(org_a.member)}"})
    assert response.status_code == 201
    test = db.session.get(AssessmentTest, response.json["data"]["id"])
    assert test.organization_id == org_a.admin.organization_id
    # A wrong token is a 401, never a fall back to the cookie.
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer hub_wrong"}).status_code == 401


def test_sign_out_is_post_only_with_csrf(org_a, browser):
    admin = browser(org_a.admin)
    assert admin.get("/logout").status_code == 405
    assert admin.post("/logout").status_code == 400
    assert admin.get("/settings/integrations").status_code == 200
    response = admin.post("/logout", data={"csrf_token": csrf_token(admin, "/settings/integrations")})
    assert response.status_code == 302
    assert admin.get("/settings/integrations").status_code == 302


# --- redirects --------------------------------------------------------------------------------

OFF_SITE = ["https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil.example",
            "/\t/evil.example", "\t//evil.example", "http:evil.example", "https:/evil.example",
            "javascript:alert(1)", "//evil.example@hub.test", " //evil.example"]


@pytest.mark.parametrize("target", OFF_SITE)
def test_no_open_redirect_through_next(app, org_a, client, target):
    token = csrf_token(client)
    response = client.post("/login?next=" + quote(target, safe=""), data={
        "email": org_a.admin.email, "password": "correct horse battery", "csrf_token": token})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\"))
    assert urlsplit(urljoin("https://hub.test/login", location)).netloc == "hub.test"
    assert not re.search(r"[\x00-\x20\\]", location)


def test_next_keeps_local_paths(org_a, client):
    token = csrf_token(client)
    response = client.post("/login?next=/tests%3Fpage%3D2", data={
        "email": org_a.admin.email, "password": "correct horse battery", "csrf_token": token})
    assert response.headers["Location"] == "/tests?page=2"


# --- cookies and headers ------------------------------------------------------------------------

@pytest.fixture
def production_app(postgres_url, redis_server):
    app = _make_app(postgres_url, redis_server, {"HUB_ENV": "production", "HUB_BASE_URL": "https://hub.test",
                                                 "HUB_TRUSTED_HOSTS": "hub.test", "SMTP_URL": "smtp://127.0.0.1:1",
                                                 # the hub's cookies, whatever is loaded: a plugin
                                                 # that needs no production settings of its own
                                                 "HUB_PLUGINS": [PARTNER_EXAMPLE]})
    with app.app_context():
        yield app
        db.session.remove()


def test_production_session_cookie_is_secure_httponly_lax(production_app):
    from hub.auth import create_user

    user = create_user("Prod", "admin@prod.example", "correct horse battery", "admin")
    db.session.commit()
    client = production_app.test_client()
    page = client.get("/login", base_url="https://hub.test")
    # Over HTTPS the CSRF check also wants a same-site Referer, as browsers send.
    response = client.post("/login", base_url="https://hub.test",
                           headers={"Referer": "https://hub.test/login"}, data={
        "email": user.email, "password": "correct horse battery",
        "csrf_token": form_token(page.get_data(as_text=True))})
    assert response.status_code == 302
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    attributes = {a.strip().split("=")[0].lower(): a for a in cookie.split(";")[1:]}
    assert "secure" in attributes and "httponly" in attributes
    assert attributes["samesite"].split("=")[1].strip().lower() == "lax"
    assert "Strict-Transport-Security" in response.headers
    assert "max-age=31536000" in page.headers["Strict-Transport-Security"]


def test_security_headers_on_pages_api_errors_and_candidate_links(org_a, browser):
    anonymous = browser()
    responses = {
        "sign-in page": anonymous.get("/login"),
        "candidate page": anonymous.get(f"/t/{org_a.invitation_token}"),
        "report page": anonymous.get(f"/r/{org_a.report_token}"),
        "404 page": anonymous.get("/no/such/page"),
        "API 401": anonymous.get("/api/v1/me"),
        "webhook 404": anonymous.post("/webhooks/wecp_lever/nope", data=b"{}"),
        "signed-in page": browser(org_a.admin).get("/settings/integrations"),
    }
    for name, response in responses.items():
        h = response.headers
        csp = {d.split()[0]: d.split()[1:] for d in h["Content-Security-Policy"].split(";") if d.strip()}
        assert csp["frame-ancestors"] == ["'none'"], name
        assert csp["script-src"] == ["'self'"] and "'unsafe-inline'" not in csp["default-src"], name
        assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], name
        assert h["X-Content-Type-Options"] == "nosniff", name
        assert h["Referrer-Policy"] in ("no-referrer", "same-origin", "strict-origin"), name
        assert h["X-Frame-Options"] == "DENY", name
        assert "Strict-Transport-Security" not in h, name  # development runs on plain http
    for name in ("candidate page", "report page", "signed-in page", "API 401"):
        assert responses[name].headers["Cache-Control"] == "no-store", name


def _templates():
    for base in ("hub/templates", "plugins"):
        for path in (ROOT / base).rglob("*.html"):
            if "/sandbox/" in str(path) or "/mail/" in str(path):
                continue  # the sandbox plays Lever; emails are not pages (no CSP applies)
            yield path


def test_pages_have_no_inline_scripts_styles_or_handlers():
    """The CSP forbids inline code; templates keep to that, so pages work under it."""
    offenders = []
    for path in _templates():
        html = path.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)", r"\son[a-z]+\s*=", r"javascript:", r"\sstyle\s*="):
            if re.search(pattern, html, re.IGNORECASE):
                offenders.append((str(path.relative_to(ROOT)), pattern))
    assert offenders == []


# --- sign-in ----------------------------------------------------------------------------------

def _error(response) -> str:
    return re.search(r'<p class="error"[^>]*>(.*?)</p>', response.get_data(as_text=True)).group(1)


def test_sign_in_failures_give_one_generic_error(app, org_a, client, make_user):
    gone = make_user(org="Org A", role="admin", email="gone@org-a.example")
    gone.active = False
    db.session.commit()
    answers = []
    for email, password in ((org_a.admin.email, "wrong password!"), ("nobody@org-a.example", "wrong password!"),
                            (gone.email, "correct horse battery"), ("", "")):
        response = client.post("/login", data={"email": email, "password": password,
                                               "csrf_token": csrf_token(client)})
        answers.append((response.status_code, _error(response)))
    assert set(answers) == {(401, "Email or password is incorrect.")}


def test_sign_in_attempts_are_rate_limited_across_processes(app, org_a):
    """Two web processes share one budget (in Redis): spreading guesses over them does not help,
    and the right password is refused once the budget is spent."""
    app.config["HUB_LOGIN_ATTEMPTS_PER_MINUTE"] = 4
    other = create_app(base_config(app.config["DATABASE_URL"], app.config["REDIS_URL"],
                                   HUB_LOGIN_ATTEMPTS_PER_MINUTE=4))
    clients = [app.test_client(), other.test_client()]
    for i in range(4):
        c = clients[i % 2]
        c.post("/login", data={"email": org_a.admin.email, "password": f"guess {i}",
                               "csrf_token": csrf_token(c)})
    c = clients[0]
    response = c.post("/login", data={"email": org_a.admin.email, "password": "correct horse battery",
                                      "csrf_token": csrf_token(c)})
    assert response.status_code == 401 and "Too many sign-in attempts" in _error(response)
    assert c.get("/settings/integrations").status_code == 302
    # The same answer for an address that has no account: the limit reveals nothing.
    for c in clients:
        for _ in range(3):
            response = c.post("/login", data={"email": "ghost@org-a.example", "password": "x",
                                              "csrf_token": csrf_token(c)})
    assert "Too many sign-in attempts" in _error(response)


def test_sign_in_rotates_the_session(app, org_a, client):
    """Nothing of the session before sign-in survives it (session fixation): the id a visitor
    (or an attacker who planted the cookie) held is ended, and its CSRF secret with it."""
    from hub.extensions import get_redis
    from hub.sessions import _key

    old_form_token = csrf_token(client)
    before = client.get_cookie("session").value
    assert not get_redis().exists(_key(before))  # a visitor's session is its signed cookie (#39)
    sign_in(client, org_a.admin.email)
    after = client.get_cookie("session").value
    assert after != before and get_redis().exists(_key(after))
    # The form token issued before sign-in no longer works.
    assert client.post("/logout", data={"csrf_token": old_form_token}).status_code == 400
    # Signing in again over a signed-in session (or one an attacker planted) ends its id too.
    sign_in(client, org_a.admin.email)
    signed_in_before = client.get_cookie("session").value
    sign_in(client, org_a.admin.email)
    again = client.get_cookie("session").value
    assert again != signed_in_before and not get_redis().exists(_key(signed_in_before))
    assert db.session.scalar(db.select(AuditEvent).filter_by(action="user.login")) is not None


# --- request size -----------------------------------------------------------------------------

def test_request_bodies_over_1_mib_get_413(app, org_a, browser):
    assert app.config["MAX_CONTENT_LENGTH"] == ONE_MIB
    admin = browser(org_a.admin)
    token = csrf_token(admin, "/tests/new")
    big = "x" * (ONE_MIB + 1)
    form = admin.post("/tests/new", data={"csrf_token": token, "title": big})
    assert form.status_code == 413
    body = '{"title": "' + big + '", "questions": []}'
    cookie_api = admin.post("/api/v1/tests", data=body, content_type="application/json",
                            headers={"X-CSRFToken": token})
    bearer_api = app.test_client().post("/api/v1/tests", data=body, content_type="application/json",
                                        headers={"Authorization": f"Bearer {api_token(org_a.member)}"})
    candidate = browser().post(f"/t/{org_a.invitation_token}/submit", data={"q-1": big})
    assert (cookie_api.status_code, bearer_api.status_code, candidate.status_code) == (413, 413, 413)
    assert cookie_api.is_json and bearer_api.is_json
