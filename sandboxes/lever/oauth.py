"""OAuth 2.0 server in the manner of Lever's Auth0: sign-in, consent, codes, rotating tokens."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import urlencode

from flask import (
    Blueprint,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from .state import AccessToken, AuthCode, AuthorizedApp, RefreshToken, SandboxState, new_id, now_ms

bp = Blueprint("lever_sandbox_oauth", __name__)

CODE_TTL_SECONDS = 300

# Lever docs (/developer/oauth#scopes): the scopes an app may ask for, in words for the consent
# page. A write scope includes its read scope.
SCOPES = {
    "offline_access": "Stay connected when you are not using the app (refresh tokens)",
    "opportunities:read:admin": "Read all opportunities (candidates)",
    "opportunities:write:admin": "Read and change all opportunities: stages, tags",
    "notes:read:admin": "Read notes on opportunities",
    "notes:write:admin": "Read and add notes on opportunities",
    "postings:read:admin": "Read all job postings",
    "postings:write:admin": "Read and change job postings",
    "stages:read:admin": "Read the account's pipeline stages",
    "tags:read:admin": "Read the account's tags",
    "users:read:admin": "Read the account's users",
    "webhooks:read:admin": "Read webhooks",
    "webhooks:write:admin": "Read, create and delete webhooks",
    "files:read:admin": "Read files attached to opportunities",
    "files:write:admin": "Read and upload files to opportunities",
    "confidential:access:admin": "Access confidential postings and their candidates",
}


def _state() -> SandboxState:
    return current_app.extensions["lever_sandbox"]


def audience() -> str:
    # Lever docs (/developer/oauth): audience is the API base with its trailing slash, and is
    # compared exactly.
    return current_app.config.get("SANDBOX_AUDIENCE") or request.host_url + "v1/"


def granted_scopes(requested: str, audience_given: bool) -> list[str]:
    # Lever docs (/developer/oauth): without `audience` the consent screen only offers
    # offline_access. Unknown scopes are not granted (Auth0 drops them silently).
    wanted = [s for s in requested.split() if s in SCOPES]
    if not audience_given:
        wanted = [s for s in wanted if s == "offline_access"]
    return list(dict.fromkeys(wanted))


def _redirect_back(redirect_uri: str, state: str | None, **params):
    if state is not None:
        params["state"] = state
    separator = "&" if "?" in redirect_uri else "?"
    return redirect(redirect_uri + separator + urlencode(params), code=302)


def _error_page(message: str, status: int = 400):
    return render_template("lever_sandbox/oauth_error.html", message=message), status


def _signed_in_user():
    user_id = session.get("user_id")
    if not user_id:
        return None, None
    state = _state()
    with state.lock:
        for account in state.accounts.values():
            if user_id in account.users:
                return account, account.users[user_id]
    return None, None


@bp.route("/authorize", methods=["GET"])
def authorize():
    args = request.args
    state = _state()
    client = state.clients.get(args.get("client_id", ""))
    if client is None:
        return _error_page("Unknown client_id: this app is not registered.")
    redirect_uri = args.get("redirect_uri", "")
    # Lever docs (/developer/oauth): redirect_uri must match a registered one exactly.
    if redirect_uri not in client.redirect_uris:
        return _error_page("redirect_uri does not match any callback URL registered for this app.")
    oauth_state = args.get("state")
    if args.get("response_type") != "code":
        return _redirect_back(redirect_uri, oauth_state, error="unsupported_response_type",
                              error_description="response_type must be code")
    given_audience = args.get("audience")
    if given_audience is not None and given_audience != audience():
        return _redirect_back(redirect_uri, oauth_state, error="access_denied",
                              error_description=f"Service not found: {given_audience}")
    challenge, method = args.get("code_challenge"), args.get("code_challenge_method", "S256")
    if challenge and method != "S256":
        return _redirect_back(redirect_uri, oauth_state, error="invalid_request",
                              error_description="code_challenge_method must be S256")

    account, user = _signed_in_user()
    if user is None:
        return render_template("lever_sandbox/login.html", next_url=request.full_path, error=None)
    if not user.is_super_admin:
        return render_template("lever_sandbox/not_allowed.html", user=user, account=account,
                               client=client), 403
    scopes = granted_scopes(args.get("scope", ""), given_audience is not None)
    consent_id = secrets.token_urlsafe(16)
    with state.lock:
        state.consents[consent_id] = {
            "client_id": client.client_id, "redirect_uri": redirect_uri, "state": oauth_state,
            "scopes": scopes, "account_id": account.id, "user_id": user.id,
            "code_challenge": challenge,
        }
    return render_template("lever_sandbox/consent.html", client=client, account=account,
                           user=user, consent_id=consent_id,
                           scopes=[(s, SCOPES[s]) for s in scopes])


@bp.route("/authorize/decision", methods=["POST"])
def decide():
    state = _state()
    with state.lock:
        consent = state.consents.pop(request.form.get("consent_id", ""), None)
    account, user = _signed_in_user()
    if consent is None or user is None or user.id != consent["user_id"]:
        return _error_page("This consent request has expired. Start again from the app.")
    if request.form.get("decision") != "accept":
        return _redirect_back(consent["redirect_uri"], consent["state"], error="access_denied",
                              error_description="User did not authorize the request")
    code = secrets.token_urlsafe(24)
    with state.lock:
        state.codes[code] = AuthCode(
            code=code, client_id=consent["client_id"], redirect_uri=consent["redirect_uri"],
            account_id=account.id, user_id=user.id, scopes=consent["scopes"],
            expires_at=time.time() + CODE_TTL_SECONDS, code_challenge=consent["code_challenge"])
        # Lever docs (/developer/oauth): the app then appears under Authorized Apps.
        account.authorized_apps[consent["client_id"]] = AuthorizedApp(
            client_id=consent["client_id"], scopes=consent["scopes"], granted_by=user.id,
            granted_at=now_ms())
    return _redirect_back(consent["redirect_uri"], consent["state"], code=code)


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = request.values.get("next") or url_for("lever_sandbox_ui.index")
    if not next_url.startswith("/"):
        next_url = "/"  # only local redirects
    if request.method == "GET":
        return render_template("lever_sandbox/login.html", next_url=next_url, error=None)
    found = _state().user_by_email(request.form.get("email", ""))
    password = request.form.get("password", "")
    if (found is None or not found[1].active or found[1].password is None
            or not hmac.compare_digest(found[1].password, password)):
        return render_template("lever_sandbox/login.html", next_url=next_url,
                               error="Wrong email or password."), 401
    session["user_id"] = found[1].id
    return redirect(next_url)


@bp.route("/logout", methods=["POST"])
def logout():
    session.pop("user_id", None)
    return redirect(url_for("lever_sandbox_ui.index"))


# --- token endpoint -------------------------------------------------------------------------

def _token_error(status: int, error: str, description: str):
    return jsonify({"error": error, "error_description": description}), status


def _invalid_grant(description: str):
    # Lever docs (/developer/oauth) and lever-api.md: Auth0 answers 403 invalid_grant for a
    # revoked or spent refresh token [unverified]; the status is configurable.
    return _token_error(current_app.config["SANDBOX_INVALID_GRANT_STATUS"], "invalid_grant",
                        description)


def _client_credentials() -> tuple[str | None, str | None]:
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        return auth.username, auth.password
    return request.form.get("client_id"), request.form.get("client_secret")


def issue_tokens(state: SandboxState, account_id: str, client_id: str, scopes: list[str],
                 family_id: str | None = None) -> dict:
    """Mint an access token (and a refresh token when offline_access was granted)."""
    ttl = int(current_app.config["SANDBOX_ACCESS_TOKEN_TTL"])
    access = AccessToken(id=new_id(), token=secrets.token_urlsafe(32), account_id=account_id,
                         client_id=client_id, scopes=scopes, expires_at=time.time() + ttl)
    body = {"access_token": access.token, "expires_in": ttl, "token_type": "Bearer",
            "scope": " ".join(scopes)}
    with state.lock:
        state.access_tokens[access.token] = access
        # Auth0 only issues a refresh token when offline_access was granted.
        if "offline_access" in scopes:
            refresh = RefreshToken(token="v1." + secrets.token_urlsafe(48),
                                   family_id=family_id or new_id(), account_id=account_id,
                                   client_id=client_id, scopes=scopes, issued_at=time.time())
            state.refresh_tokens[refresh.token] = refresh
            body["refresh_token"] = refresh.token
    g.log.update(account_id=account_id, client_id=client_id, token_id=access.id)
    return body


def _verify_pkce(challenge: str | None, verifier: str | None) -> bool:
    if challenge is None:
        return True
    if not verifier:
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") == challenge


def _exchange_code(state: SandboxState, client_id: str):
    with state.lock:
        code = state.codes.get(request.form.get("code", ""))
        valid = (code is not None and not code.used and code.client_id == client_id
                 and time.time() < code.expires_at
                 and code.redirect_uri == request.form.get("redirect_uri")
                 and _verify_pkce(code.code_challenge, request.form.get("code_verifier")))
        if code is not None:
            code.used = True  # single use, even when this attempt fails
        if not valid:
            return _invalid_grant("Invalid authorization code")
        app = state.accounts[code.account_id].authorized_apps.get(client_id)
        if app is None:
            return _invalid_grant("Invalid authorization code")
        return jsonify(issue_tokens(state, code.account_id, client_id, code.scopes))


def _refresh(state: SandboxState, client_id: str):
    config = current_app.config
    with state.lock:
        old = state.refresh_tokens.get(request.form.get("refresh_token", ""))
        if old is None or old.client_id != client_id or old.revoked:
            return _invalid_grant("Unknown or invalid refresh token.")
        if old.rotated_at is not None:
            grace = float(config["SANDBOX_REFRESH_REUSE_GRACE_SECONDS"])
            if time.time() - old.rotated_at > grace:
                # Auth0's reuse detection (unverified for Lever) revokes the whole family.
                if config["SANDBOX_REFRESH_REUSE_REVOKES_FAMILY"]:
                    for token in state.refresh_tokens.values():
                        if token.family_id == old.family_id:
                            token.revoked = True
                return _invalid_grant("Unknown or invalid refresh token.")
        else:
            old.rotated_at = time.time()
        # lever-api.md: every refresh returns a new refresh token and spends the old one.
        return jsonify(issue_tokens(state, old.account_id, client_id, old.scopes, old.family_id))


@bp.route("/oauth/token", methods=["POST"])
def token():
    state = _state()
    client_id, client_secret = _client_credentials()
    g.log["client_id"] = client_id
    client = state.clients.get(client_id or "")
    if client is None or not hmac.compare_digest(client.client_secret, client_secret or ""):
        return _token_error(401, "invalid_client", "Client authentication failed.")
    grant_type = request.form.get("grant_type")
    if grant_type == "authorization_code":
        return _exchange_code(state, client_id)
    if grant_type == "refresh_token":
        return _refresh(state, client_id)
    return _token_error(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")


def revoke_app(state: SandboxState, account_id: str, client_id: str) -> bool:
    """Lever's "Revoke access": every token of that app for that account stops working."""
    with state.lock:
        account = state.account(account_id)
        removed = account.authorized_apps.pop(client_id, None) is not None
        for access in state.access_tokens.values():
            if access.account_id == account_id and access.client_id == client_id:
                access.revoked = True
        for refresh in state.refresh_tokens.values():
            if refresh.account_id == account_id and refresh.client_id == client_id:
                refresh.revoked = True
        for code in state.codes.values():
            if code.account_id == account_id and code.client_id == client_id:
                code.used = True
        return removed
