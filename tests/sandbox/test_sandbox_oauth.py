"""OAuth server of the Lever sandbox: consent, audience, codes, rotation and reuse, revocation."""
from __future__ import annotations

import base64
import hashlib
import time

import requests
from lever_sandbox_helpers import (
    ACME,
    ALL_SCOPES,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    Api,
    token_request,
)


def connect(sandbox, scope=ALL_SCOPES, **kwargs) -> dict:
    """Consent in the browser flow and exchange the code; returns the token response JSON."""
    answer = sandbox.authorize(CLIENT_ID, REDIRECT_URI, scope, **kwargs)
    assert "code" in answer, answer
    response = token_request(sandbox, grant_type="authorization_code", code=answer["code"],
                             redirect_uri=REDIRECT_URI)
    assert response.status_code == 200, response.text
    return response.json()


def refresh(sandbox, refresh_token):
    return token_request(sandbox, grant_type="refresh_token", refresh_token=refresh_token)


def authorize_url(sandbox, **params):
    query = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code",
             "scope": ALL_SCOPES, "audience": sandbox.audience, "state": "s1", **params}
    return sandbox.url + "/authorize?" + requests.compat.urlencode(query)


def signed_in_browser(sandbox, email="olivia@acme.example") -> requests.Session:
    browser = requests.Session()
    answer = browser.post(sandbox.url + "/login", data={"email": email, "password": "sandbox",
                                                         "next": "/"}, allow_redirects=False)
    assert answer.status_code == 302
    return browser


# --- consent page ----------------------------------------------------------------------------

def test_authorize_asks_for_sign_in_then_shows_consent_in_words(sandbox):
    anonymous = requests.get(authorize_url(sandbox), allow_redirects=False)
    assert anonymous.status_code == 200
    assert 'name="password"' in anonymous.text

    page = signed_in_browser(sandbox).get(authorize_url(sandbox), allow_redirects=False)
    assert page.status_code == 200
    assert "Test App" in page.text and "Acme Corp" in page.text
    assert "Read and add notes on opportunities" in page.text
    assert ">Accept</button>" in page.text and ">Deny</button>" in page.text


def test_accept_redirects_with_code_and_state(sandbox):
    answer = sandbox.authorize(CLIENT_ID, REDIRECT_URI, ALL_SCOPES, state="opaque-123")
    assert answer["_location"].startswith(REDIRECT_URI + "?")
    assert answer["state"] == "opaque-123" and answer["code"]
    assert CLIENT_ID in sandbox.admin.state(ACME)["authorized_apps"]


def test_deny_redirects_with_access_denied(sandbox):
    answer = sandbox.authorize(CLIENT_ID, REDIRECT_URI, ALL_SCOPES, decision="deny", state="s9")
    assert answer["error"] == "access_denied" and answer["state"] == "s9"
    assert "code" not in answer
    assert sandbox.admin.state(ACME)["authorized_apps"] == []


def test_unknown_client_and_inexact_redirect_uri_are_refused_without_redirect(sandbox):
    bad_client = requests.get(authorize_url(sandbox, client_id="nope"), allow_redirects=False)
    assert bad_client.status_code == 400 and "Unknown client_id" in bad_client.text
    for near_miss in (REDIRECT_URI + "/", REDIRECT_URI.replace("127.0.0.1", "localhost"),
                      REDIRECT_URI + "?x=1"):
        answer = requests.get(authorize_url(sandbox, redirect_uri=near_miss), allow_redirects=False)
        assert answer.status_code == 400, near_miss


def test_wrong_response_type_redirects_with_error(sandbox):
    answer = requests.get(authorize_url(sandbox, response_type="token"), allow_redirects=False)
    assert answer.status_code == 302
    assert "error=unsupported_response_type" in answer.headers["Location"]
    assert "state=s1" in answer.headers["Location"]


def test_only_a_super_admin_may_accept(sandbox):
    answer = sandbox.authorize(CLIENT_ID, REDIRECT_URI, ALL_SCOPES, email="hank@acme.example")
    assert answer["page_status"] == 403
    assert "Only a Super Admin can authorize apps" in answer["page"]


def test_wrong_password_is_refused(sandbox):
    answer = requests.post(sandbox.url + "/login", data={"email": "olivia@acme.example",
                                                         "password": "wrong", "next": "/"})
    assert answer.status_code == 401 and "Wrong email or password" in answer.text


# --- audience --------------------------------------------------------------------------------

def test_without_audience_only_offline_access_is_granted(sandbox):
    body = connect(sandbox, audience=None)
    assert body["scope"] == "offline_access"
    api = Api(sandbox.url, body["access_token"])
    assert api.get("/postings").status_code == 403
    assert api.get("/postings").json()["code"] == "Forbidden"


def test_audience_must_match_exactly_with_trailing_slash(sandbox):
    answer = sandbox.authorize(CLIENT_ID, REDIRECT_URI, ALL_SCOPES,
                               audience=sandbox.audience.rstrip("/"))
    assert answer["error"] == "access_denied"
    assert "Service not found" in answer["error_description"]


def test_with_audience_the_requested_scopes_are_granted(sandbox):
    body = connect(sandbox)
    assert set(body["scope"].split()) == set(ALL_SCOPES.split())
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert Api(sandbox.url, body["access_token"]).get("/postings").status_code == 200


# --- token endpoint --------------------------------------------------------------------------

def test_codes_are_single_use(sandbox):
    code = sandbox.authorize(CLIENT_ID, REDIRECT_URI, ALL_SCOPES)["code"]
    first = token_request(sandbox, grant_type="authorization_code", code=code,
                          redirect_uri=REDIRECT_URI)
    second = token_request(sandbox, grant_type="authorization_code", code=code,
                           redirect_uri=REDIRECT_URI)
    assert first.status_code == 200
    assert second.status_code == 403 and second.json()["error"] == "invalid_grant"


def test_code_exchange_needs_the_same_redirect_uri(sandbox):
    code = sandbox.authorize(CLIENT_ID, REDIRECT_URI, ALL_SCOPES)["code"]
    answer = token_request(sandbox, grant_type="authorization_code", code=code,
                           redirect_uri=REDIRECT_URI + "x")
    assert answer.json()["error"] == "invalid_grant"


def test_wrong_client_secret_is_invalid_client(sandbox):
    answer = token_request(sandbox, client_secret="wrong", grant_type="refresh_token",
                           refresh_token="x")
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_http_basic_client_authentication_is_accepted(sandbox):
    code = sandbox.authorize(CLIENT_ID, REDIRECT_URI, ALL_SCOPES)["code"]
    answer = requests.post(sandbox.url + "/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET),
                           data={"grant_type": "authorization_code", "code": code,
                                 "redirect_uri": REDIRECT_URI})
    assert answer.status_code == 200 and answer.json()["refresh_token"]


def test_pkce_is_checked_when_a_challenge_was_sent(sandbox):
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    extra = {"code_challenge": challenge.decode(), "code_challenge_method": "S256"}
    code = sandbox.authorize(CLIENT_ID, REDIRECT_URI, ALL_SCOPES, extra=extra)["code"]
    wrong = token_request(sandbox, grant_type="authorization_code", code=code,
                          redirect_uri=REDIRECT_URI, code_verifier="w" * 50)
    assert wrong.json()["error"] == "invalid_grant"
    code = sandbox.authorize(CLIENT_ID, REDIRECT_URI, ALL_SCOPES, extra=extra)["code"]
    right = token_request(sandbox, grant_type="authorization_code", code=code,
                          redirect_uri=REDIRECT_URI, code_verifier=verifier)
    assert right.status_code == 200


def test_access_tokens_expire(sandbox):
    sandbox.admin.configure(SANDBOX_ACCESS_TOKEN_TTL=1)
    body = connect(sandbox)
    assert body["expires_in"] == 1
    api = Api(sandbox.url, body["access_token"])
    assert api.get("/stages").status_code == 200
    time.sleep(1.1)
    expired = api.get("/stages")
    assert expired.status_code == 401 and expired.json()["code"] == "Unauthorized"


def test_refresh_rotates_and_the_old_refresh_token_is_spent(sandbox):
    first = connect(sandbox)
    second = refresh(sandbox, first["refresh_token"])
    assert second.status_code == 200
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"]
    assert new["access_token"] != first["access_token"]
    assert Api(sandbox.url, new["access_token"]).get("/stages").status_code == 200

    reused = refresh(sandbox, first["refresh_token"])
    assert reused.status_code == 403
    assert reused.json() == {"error": "invalid_grant",
                             "error_description": "Unknown or invalid refresh token."}
    # The newest refresh token keeps working (reuse detection is off by default).
    assert refresh(sandbox, new["refresh_token"]).status_code == 200


def test_refresh_reuse_grace_and_status_are_configurable(sandbox):
    sandbox.admin.configure(SANDBOX_REFRESH_REUSE_GRACE_SECONDS=30,
                            SANDBOX_INVALID_GRANT_STATUS=400)
    first = connect(sandbox)
    assert refresh(sandbox, first["refresh_token"]).status_code == 200
    assert refresh(sandbox, first["refresh_token"]).status_code == 200  # within the grace
    assert refresh(sandbox, "v1.unknown").status_code == 400


def test_reuse_can_revoke_the_whole_family(sandbox):
    sandbox.admin.configure(SANDBOX_REFRESH_REUSE_REVOKES_FAMILY=True)
    first = connect(sandbox)
    second = refresh(sandbox, first["refresh_token"]).json()
    assert refresh(sandbox, first["refresh_token"]).status_code == 403
    assert refresh(sandbox, second["refresh_token"]).status_code == 403


def test_reset_restores_the_configured_defaults(sandbox):
    sandbox.admin.configure(SANDBOX_ACCESS_TOKEN_TTL=5)
    sandbox.admin.reset()
    assert sandbox.admin._call("GET", "/config")["data"]["SANDBOX_ACCESS_TOKEN_TTL"] == 3600


# --- revocation ------------------------------------------------------------------------------

def test_revoke_from_the_authorized_apps_page_kills_every_token(sandbox):
    one, two = connect(sandbox), connect(sandbox)
    browser = signed_in_browser(sandbox)
    page = browser.get(sandbox.url + f"/accounts/{ACME}/authorized-apps")
    assert "Test App" in page.text and ">Revoke access</button>" in page.text

    browser.post(sandbox.url + f"/accounts/{ACME}/authorized-apps/{CLIENT_ID}/revoke")

    for body in (one, two):
        answer = Api(sandbox.url, body["access_token"]).get("/stages")
        assert answer.status_code == 401 and answer.json()["code"] == "Unauthorized"
        again = refresh(sandbox, body["refresh_token"])
        assert again.status_code == 403 and again.json()["error"] == "invalid_grant"
    assert "Test App" not in browser.get(sandbox.url + f"/accounts/{ACME}/authorized-apps").text


def test_revoke_touches_only_that_app_and_account(sandbox):
    sandbox.admin.add_client("other-app", "s", [REDIRECT_URI])
    ours = sandbox.admin.mint_tokens(ACME, CLIENT_ID)
    other_app = sandbox.admin.mint_tokens(ACME, "other-app")
    other_account = sandbox.admin.mint_tokens("globex", CLIENT_ID)
    sandbox.admin.revoke_app(ACME, CLIENT_ID)
    assert Api(sandbox.url, ours["access_token"]).get("/stages").status_code == 401
    assert Api(sandbox.url, other_app["access_token"]).get("/stages").status_code == 200
    assert Api(sandbox.url, other_account["access_token"]).get("/stages").status_code == 200


def test_reconnecting_after_revoke_works(sandbox):
    sandbox.admin.revoke_app(ACME, CLIENT_ID)
    body = connect(sandbox)
    assert Api(sandbox.url, body["access_token"]).get("/stages").status_code == 200
