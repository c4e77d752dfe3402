"""Sign-in, roles and organization scoping for pages (session) and the JSON API (bearer tokens)."""
from __future__ import annotations

import functools
import hashlib
import logging
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from redis.exceptions import RedisError
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db, get_redis
from .models import ApiToken, Operator, User, audit, utcnow
from .ratelimit import limit_client
from .security import is_sessionless

bp = Blueprint("auth", __name__)
log = logging.getLogger("hub.auth")


#: How precisely an API token's last use is kept (one write a minute at most).
TOKEN_USE_RESOLUTION = timedelta(minutes=1)


def load_user() -> None:
    """Before every request: who is calling, from a bearer token or the session cookie.

    Runs once per request (the job dashboard's guard may have run it first).
    """
    if g.get("hub_caller_loaded"):
        return
    g.hub_caller_loaded = True
    g.user = None
    g.operator = None
    g.api_token = False
    if is_sessionless(request):
        return  # by a delivery's signature or a partner's key (hub.partners), never by a user
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and request.path.startswith("/api/"):
        # Valid or not, a bearer call spends the address's budget: guessing tokens is slow.
        limit_client("api", current_app.config["HUB_API_CALLS_PER_MINUTE"])
        token = db.session.scalar(db.select(ApiToken).filter_by(
            token_hash=ApiToken.hash(header[7:].strip()), revoked_at=None))
        if token is None or token.status != "active" or not token.user.active:
            abort(401, description="invalid API token")
        now = utcnow()
        if token.last_used_at is None or now - token.last_used_at > TOKEN_USE_RESOLUTION:
            # Recorded at once (read-only calls commit nothing), at most once a minute per token.
            db.session.execute(db.update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
            db.session.commit()
        g.user = token.user
        # Bearer calls carry no ambient credential, so the API skips CSRF for them.
        g.api_token = True
        return
    operator_id = session.get("operator_id")
    if operator_id is not None:
        # An operator is never a user: g.user stays None, so no organization's page opens.
        operator = db.session.get(Operator, operator_id)
        if operator is not None and session.get("pw") == password_version(operator.password_hash):
            g.operator = operator
        else:
            session.clear()
        return
    user_id = session.get("user_id")
    if user_id is not None:
        user = db.session.get(User, user_id)
        # A password change ends every session made with the old one, even one set in the database.
        if user is not None and user.active and session.get("pw") == password_version(user.password_hash):
            g.user = user
        else:
            session.clear()


def password_version(password_hash: str) -> str:
    """A digest of the stored password hash, kept in the (server-side) session: it changes with
    the password, and tells nothing of it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.user is None:
            if request.path.startswith("/api/"):
                abort(401)
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapped


def admin_required(view):
    """Only ``admin`` and ``super_admin`` pass; members get 403."""
    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not g.user.is_admin:
            abort(403)
        return view(*args, **kwargs)
    return wrapped


def current_org_id() -> int:
    return g.user.organization_id


def scoped(model, **filters):
    """A select of ``model`` limited to the caller's organization: the only way to read tenant data."""
    return db.select(model).filter_by(organization_id=current_org_id(), **filters)


def get_scoped_or_404(model, ident):
    obj = db.session.get(model, ident)
    if obj is None or obj.organization_id != current_org_id():
        abort(404)
    return obj


def safe_next(target: str | None) -> str:
    """Only local paths are followed after sign-in; anything else goes home (no open redirect)."""
    if not target:
        return url_for("settings.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return url_for("settings.index")
    # A line break in a Location header is a 500 (or a header injection): only printable text.
    if len(target) > 2048 or not target.isprintable() or any(c.isspace() for c in target):
        return url_for("settings.index")
    return target


#: The longest email address (RFC 5321); a longer one is no account's and is never stored.
MAX_EMAIL = 320
#: A password hash to check unknown emails against, so they take as long as known ones.
_DUMMY_HASH = generate_password_hash("no account has this password")


def _throttle_keys(email: str) -> list[tuple[str, int]]:
    """The Redis counters of a sign-in attempt and their limits a minute.

    Per (account, address): guesses at one account from one address, so an attacker elsewhere
    can never lock the real user out. Per address: one address guessing many accounts. Keys hold
    hashes only: whatever is typed, a key is short and its value a number.
    """
    cfg = current_app.config
    account = hashlib.sha256(email.encode()).hexdigest()[:32]
    address = hashlib.sha256((request.remote_addr or "").encode()).hexdigest()[:32]
    return [(f"hub:login:a:{account}:{address}", cfg["HUB_LOGIN_ATTEMPTS_PER_MINUTE"]),
            (f"hub:login:ip:{address}", cfg["HUB_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE"])]


def _too_many_attempts(email: str) -> bool:
    """Whether this address has used up its budget of failed attempts (shared by all processes)."""
    try:
        keys = _throttle_keys(email)
        counts = get_redis().mget([key for key, _ in keys])
        return any(int(count or 0) >= limit for count, (_, limit) in zip(counts, keys))
    except RedisError:  # Redis down: sign-in still works, and we say so in the log.
        log.warning("hub.auth.rate_limit_unavailable")
        return False


def _count_failure(email: str) -> None:
    try:
        pipe = get_redis().pipeline()
        for key, _ in _throttle_keys(email):
            pipe.incr(key)
            pipe.expire(key, 60, nx=True)
        pipe.execute()
    except RedisError:
        log.warning("hub.auth.rate_limit_unavailable")


def _check_password(account, password: str) -> bool:
    """One password hash check whoever asks, so a known and an unknown email take the same time."""
    if account is None:
        check_password_hash(_DUMMY_HASH, password)
        return False
    return account.check_password(password)


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        password = request.form.get("password", "")[:1024]
        if len(email) > MAX_EMAIL:
            email = email[:MAX_EMAIL] + "…"  # no account's: fails below, like any unknown email
        if _too_many_attempts(email):
            error = "Too many sign-in attempts. Wait a minute and try again."
        else:
            user = db.session.scalar(db.select(User).filter_by(email=email))
            operator = None if user is not None else \
                db.session.scalar(db.select(Operator).filter_by(email=email))
            if operator is not None and _check_password(operator, password):
                session.rotate()
                session["operator_id"] = operator.id
                session["pw"] = password_version(operator.password_hash)
                session.permanent = True
                operator.last_login_at = utcnow()
                audit("operator.login", target=f"operator:{operator.id}")
                db.session.commit()
                return redirect(OPERATOR_HOME)
            if operator is None and _check_password(user, password) and user.active:
                session.rotate()
                session["user_id"] = user.id
                session["pw"] = password_version(user.password_hash)
                session.permanent = True
                user.last_login_at = utcnow()
                audit("user.login", organization_id=user.organization_id, user_id=user.id)
                db.session.commit()
                return redirect(safe_next(request.args.get("next")))
            # One message for unknown email and wrong password: no account enumeration.
            error = "Email or password is incorrect."
            _count_failure(email)
        return render_template("hub/login.html", error=error, email=email[:MAX_EMAIL]), 401
    return render_template("hub/login.html", error=None, email="")


@bp.route("/logout", methods=["POST"])
def logout():
    # The session's key is deleted in Redis: a copy of the cookie opens nothing, in any process.
    session.rotate()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account")
@login_required
def account(new_token: str | None = None, error: str | None = None, status: int = 200):
    """The signed-in user's own settings: password, sessions, API tokens."""
    tokens = db.session.scalars(db.select(ApiToken).filter_by(user_id=g.user.id)
                                .order_by(ApiToken.created_at.desc())).all()
    return render_template("hub/account.html", tokens=tokens, new_token=new_token, error=error,
                           lifetimes=ApiToken.LIFETIMES, form_id=secrets.token_urlsafe(16),
                           active_tokens=sum(1 for t in tokens if t.status == "active")), status


def revoke_own_tokens(user: User) -> int:
    """Revoke every active API token of ``user`` (each audited); how many were active.

    API tokens are not sessions: a password change or "sign out everywhere" leaves them working
    unless the user asks, in the same step, for them to end too (issue #39, 10). They are meant
    for scripts that must not stop when a person signs out; the account page says so.
    """
    active = [t for t in db.session.scalars(db.select(ApiToken).filter_by(user_id=user.id, revoked_at=None))
              if t.status == "active"]
    for token in active:
        revoke_api_token(token)
    return len(active)


def _tokens_ended(count: int) -> str:
    return f" Your API tokens were revoked ({count})." if count else ""


@bp.route("/account/password", methods=["POST"])
@login_required
def change_own_password():
    user = g.user
    new = request.form.get("new_password", "")
    if not user.check_password(request.form.get("current_password", "")):
        return account(error="Your current password is not right.", status=400)
    if new != request.form.get("confirm_password"):
        return account(error="The new password and its confirmation differ.", status=400)
    if user.check_password(new):
        return account(error="The new password is the one you have now: choose another.", status=400)
    try:
        ended = change_password(user, new)
    except ValueError as exc:
        return account(error=str(exc).capitalize() + ".", status=400)
    except RedisError:
        db.session.rollback()
        return account(error="The password could not be changed now (the session store is "
                             "unreachable). Try again.", status=503)
    revoked = revoke_own_tokens(user) if request.form.get("revoke_tokens") == "1" else 0
    db.session.commit()
    flash(f"Password changed. Your other sessions were signed out ({ended}).{_tokens_ended(revoked)}", "success")
    return redirect(url_for("auth.account"))


@bp.route("/account/tokens", methods=["POST"])
@login_required
def create_token():
    """A personal API token, shown once; only its hash is kept.

    The page that shows it is the answer to the POST (the plaintext is never stored, not even in
    the session), so a reload sends the form again: its one-time ``form_id`` makes that second
    send say so instead of making a second token (issue #40, 11).
    """
    try:
        days = int(request.form.get("days", "90"))
    except ValueError:
        days = 0
    if days not in ApiToken.LIFETIMES:
        return account(error="Choose how long the token lasts.", status=400)
    form_id = request.form.get("form_id", "")[:64]
    if form_id and form_id in session.get("token_forms_used", []):
        return account(error="That token was made already (it is listed below); its value was shown "
                             "once, when it was made. Revoke it and make another if it was not copied.",
                       status=409)
    name = " ".join(request.form.get("name", "").split())[:100] or "token"
    _, plaintext = issue_api_token(g.user, name, days)
    db.session.commit()
    if form_id:
        session["token_forms_used"] = (session.get("token_forms_used", []) + [form_id])[-10:]
    return account(new_token=plaintext)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id: int):
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != g.user.id:
        abort(404)
    revoke_api_token(token)
    db.session.commit()
    flash(f"Token “{token.name}” revoked: it gets 401 from now on.", "success")
    return redirect(url_for("auth.account"))


@bp.route("/account/sign-out-everywhere", methods=["POST"])
@login_required
def sign_out_everywhere():
    """End every session of the signed-in user, this one included."""
    from .sessions import end_sessions

    user = g.user
    try:
        ended = end_sessions("user_id", user.id)
    except RedisError:
        flash("Sessions could not be ended now (the session store is unreachable). Try again.", "error")
        return redirect(url_for("auth.account"))
    audit("user.signed_out_everywhere", organization_id=user.organization_id, user_id=user.id,
          sessions=ended)
    revoked = revoke_own_tokens(user) if request.form.get("revoke_tokens") == "1" else 0
    db.session.commit()
    session.rotate()
    flash(f"Signed out everywhere ({ended} session{'s' if ended != 1 else ''} ended).{_tokens_ended(revoked)}",
          "info")
    return redirect(url_for("auth.login"))


def change_password(user: User, new_password: str) -> int:
    """Set ``user``'s password and end their other sessions (in every process); keeps the
    caller's own session when it is the user's. Returns how many sessions ended."""
    from .sessions import end_sessions

    if len(new_password) < 8:
        raise ValueError("a password must have at least 8 characters")
    user.set_password(new_password)
    own = session.get("user_id") == user.id if has_request_context() else False
    ended = end_sessions("user_id", user.id, keep_sid=getattr(session, "sid", None) if own else None)
    if own:
        session["pw"] = password_version(user.password_hash)
    audit("user.password_changed", organization_id=user.organization_id, user_id=user.id)
    return ended


def issue_api_token(user: User, name: str, days: int) -> tuple[ApiToken, str]:
    """A new API token of ``user`` (audited); the plaintext is returned once, only its hash kept."""
    token, plaintext = ApiToken.issue(user, name, days)
    db.session.add(token)
    db.session.flush()  # its id, for the audit entry
    audit("api_token.created", organization_id=user.organization_id, user_id=user.id,
          target=f"api_token:{token.id}", days=days)
    return token, plaintext


def revoke_api_token(token: ApiToken) -> None:
    """Revoke a token (audited): it gets 401 from its next call. Revoking twice changes nothing."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit("api_token.revoked", organization_id=token.user.organization_id, user_id=token.user_id,
              target=f"api_token:{token.id}")


def set_active(user: User, active: bool) -> int:
    """Deactivate (or reactivate) a user: a deactivated user's sessions end at once and their
    API tokens get 401. Returns how many sessions ended."""
    from .sessions import end_sessions

    user.active = active
    audit("user.activated" if active else "user.deactivated", organization_id=user.organization_id,
          user_id=user.id)
    return 0 if active else end_sessions("user_id", user.id)


#: Where an operator lands after signing in: the job dashboard (``hub.admin``).
OPERATOR_HOME = "/admin/rq/"


def create_operator(email: str, password: str) -> Operator:
    """Create an operator (the CLI's ``hub operators add``); never from a page."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise ValueError("give the operator's email address")
    if len(password) < 12:
        raise ValueError("an operator's password must have at least 12 characters")
    if db.session.scalar(db.select(User).filter_by(email=email)) is not None \
            or db.session.scalar(db.select(Operator).filter_by(email=email)) is not None:
        raise ValueError(f"{email} is taken already (by a user or an operator)")
    operator = Operator(email=email)
    operator.set_password(password)
    db.session.add(operator)
    db.session.flush()
    audit("operator.created", target=f"operator:{operator.id}")
    return operator


def create_user(org_name: str, email: str, password: str, role: str = "member", name: str = "") -> User:
    """Create the user (and the organization when new). Used by the CLI, the demo and tests."""
    from .models import ROLES, Organization

    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    org = db.session.scalar(db.select(Organization).filter_by(name=org_name))
    if org is None:
        org = Organization(name=org_name)
        db.session.add(org)
        db.session.flush()
    email = email.strip().lower()
    if db.session.scalar(db.select(User).filter_by(email=email)) is not None:
        raise ValueError(f"a user with email {email} exists already")
    if db.session.scalar(db.select(Operator).filter_by(email=email)) is not None:
        raise ValueError(f"{email} belongs to an operator; a user needs another address")
    user = User(organization_id=org.id, email=email, role=role, name=name or email.split("@")[0])
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    audit("user.created", organization_id=org.id, user_id=user.id, role=role)
    return user
