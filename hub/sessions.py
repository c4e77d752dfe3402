"""Server-side sessions in Redis, shared by every web process: the cookie holds a random id only.

The session's data (who signed in, the CSRF secret, an OAuth flow's state and PKCE verifier) is a
Redis key named by a hash of the id, so a copy of Redis yields no usable cookie. A session ends
when it is idle for ``HUB_SESSION_IDLE_SECONDS`` (the key's TTL, renewed by each request) or
``HUB_SESSION_MAX_SECONDS`` after it began, whatever its use. Signing out, signing out
everywhere, a password change and deactivating a user delete the keys at once, so every web
process sees it on its next request. Each signed-in person has an index of their sessions
(``end_sessions``). Without Redis nobody is signed in (``/readyz`` says Redis is down).

A visitor who has not signed in costs Redis nothing: their session (the CSRF secret of the sign-in
form, a flashed message) travels in the cookie itself, signed with ``SECRET_KEY`` and valid for
``HUB_SESSION_IDLE_SECONDS``. Anyone may make as many of those as they like; none is stored. Only
a session that names who signed in (``OWNERS``) is kept in Redis, under a fresh id: signing in
rotates the session, so an anonymous cookie never becomes a signed-in one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time

from flask.sessions import SessionInterface, SessionMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis.exceptions import RedisError
from werkzeug.datastructures import CallbackDict

from .extensions import get_redis
from .security import is_sessionless

log = logging.getLogger("hub.sessions")

#: What a session cookie may look like (``secrets.token_urlsafe(32)``); anything else is ignored.
_SID = re.compile(r"[A-Za-z0-9_-]{43}")

#: Session keys that name who signed in, each with an index of that person's sessions.
OWNERS = ("user_id", "operator_id")


def _key(sid: str) -> str:
    return "hub:session:" + hashlib.sha256(sid.encode()).hexdigest()


def _index(owner: str, owner_id) -> str:
    return f"hub:sessions:{owner}:{owner_id}"


def _signed(app) -> URLSafeTimedSerializer:
    """The signer of anonymous sessions' cookies (a salt of its own: no other signed value of the
    hub's opens as a session)."""
    return URLSafeTimedSerializer(app.secret_key, salt="hub.sessions.anonymous",
                                  signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256})


def _owned(data) -> bool:
    """Whether a session's data names who signed in: only those are kept in Redis."""
    return any(data.get(owner) is not None for owner in OWNERS)


class ServerSession(CallbackDict, SessionMixin):
    """A session whose data lives in Redis under ``sid``."""

    def __init__(self, initial=None, sid: str | None = None, created: float | None = None):
        def on_update(session):
            session.modified = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.created = created
        #: The id this session had before ``rotate``: its key is deleted when the response goes.
        self.previous_sid: str | None = None
        #: Whether the request brought it as a signed cookie (an anonymous visitor's session).
        self.in_cookie = False
        self.modified = False

    def rotate(self) -> None:
        """Forget the data and give the session a new id (sign-in, sign-out: no fixation)."""
        if self.sid:
            self.previous_sid = self.sid
        self.sid, self.created = None, None
        self.clear()
        self.modified = True


class RedisSessionInterface(SessionInterface):
    """Flask's session interface over Redis (see the module docstring)."""

    def open_session(self, app, request):
        if is_sessionless(request):
            return self.make_null_session(app)  # deliveries and partner calls never carry one
        sid = request.cookies.get(self.get_cookie_name(app), "")
        if not _SID.fullmatch(sid):
            return self._open_anonymous(app, sid)
        try:
            raw = get_redis(app).get(_key(sid))
        except RedisError:
            log.warning("hub.sessions.unavailable")
            return ServerSession()
        if raw is None:
            return ServerSession()
        data = json.loads(raw)
        created = data.pop("_created", 0)
        if time.time() - created >= app.config["HUB_SESSION_MAX_SECONDS"]:
            self._delete(app, sid, data)
            return ServerSession()
        return ServerSession(data, sid=sid, created=created)

    @staticmethod
    def _open_anonymous(app, value: str) -> ServerSession:
        if not value:
            return ServerSession()
        try:
            data = _signed(app).loads(value, max_age=app.config["HUB_SESSION_IDLE_SECONDS"])
        except BadSignature:  # altered, expired or made with another SECRET_KEY: a new visitor
            return ServerSession()
        if not isinstance(data, dict) or _owned(data):
            return ServerSession()  # never written so; a signed cookie never names a user
        session = ServerSession(data)
        session.in_cookie = True
        return session

    def save_session(self, app, session, response) -> None:
        if not isinstance(session, ServerSession):
            return  # the null session of webhook intake
        if session.accessed:
            response.vary.add("Cookie")
        name, domain, path = self.get_cookie_name(app), self.get_cookie_domain(app), self.get_cookie_path(app)
        if session.previous_sid:
            self._delete(app, session.previous_sid, None)
        if not session:
            if session.sid:
                self._delete(app, session.sid, None)
            if session.sid or session.previous_sid or session.modified or session.in_cookie:
                response.delete_cookie(name, domain=domain, path=path, secure=self.get_cookie_secure(app),
                                       samesite=self.get_cookie_samesite(app),
                                       httponly=self.get_cookie_httponly(app))
            return
        if not _owned(session):
            self._save_anonymous(app, session, response)
            return
        now = time.time()
        fresh = not session.sid
        if fresh:
            session.sid, session.created = secrets.token_urlsafe(32), now
        max_age = app.config["HUB_SESSION_MAX_SECONDS"]
        ttl = max(1, int(min(app.config["HUB_SESSION_IDLE_SECONDS"], session.created + max_age - now)))
        key = _key(session.sid)
        try:
            pipe = get_redis(app).pipeline()
            if session.modified or fresh:
                pipe.set(key, json.dumps({**session, "_created": session.created}), ex=ttl)
            else:
                pipe.expire(key, ttl)  # the idle clock starts again
            for owner in OWNERS:
                if session.get(owner) is not None:
                    index = _index(owner, session[owner])
                    pipe.sadd(index, key)
                    pipe.expire(index, max_age)
            pipe.execute()
        except RedisError:
            log.warning("hub.sessions.not_saved")
            return
        response.set_cookie(name, session.sid, max_age=ttl if session.permanent else None,
                            domain=domain, path=path, secure=self.get_cookie_secure(app),
                            httponly=self.get_cookie_httponly(app), samesite=self.get_cookie_samesite(app))

    def _save_anonymous(self, app, session: ServerSession, response) -> None:
        """Nobody signed in: the data goes in the signed cookie and nothing in Redis."""
        if session.sid:  # it named somebody before this request: its key goes
            self._delete(app, session.sid, None)
        elif not session.modified and session.in_cookie:
            return  # the cookie the browser holds is still right
        value = _signed(app).dumps(dict(session))
        response.set_cookie(self.get_cookie_name(app), value, domain=self.get_cookie_domain(app),
                            path=self.get_cookie_path(app), secure=self.get_cookie_secure(app),
                            httponly=self.get_cookie_httponly(app), samesite=self.get_cookie_samesite(app))

    @staticmethod
    def _delete(app, sid: str, data: dict | None) -> None:
        key = _key(sid)
        try:
            r = get_redis(app)
            if data is None:
                raw = r.get(key)
                data = json.loads(raw) if raw else {}
            pipe = r.pipeline()
            pipe.delete(key)
            for owner in OWNERS:
                if data.get(owner) is not None:
                    pipe.srem(_index(owner, data[owner]), key)
            pipe.execute()
        except RedisError:
            log.warning("hub.sessions.not_deleted")


def end_sessions(owner: str, owner_id, keep_sid: str | None = None) -> int:
    """End every session of a user (``owner="user_id"``) or operator, but ``keep_sid``'s.

    Sign out everywhere, a password change, deactivation, an operator's removal. Returns how many
    ended. Raises ``RedisError`` when Redis is down: the caller must not report success.
    """
    r = get_redis()
    index = _index(owner, owner_id)
    keep = _key(keep_sid) if keep_sid else None
    keys = [k.decode() for k in r.smembers(index) if k.decode() != keep]
    if keys:
        pipe = r.pipeline()
        pipe.delete(*keys)
        pipe.srem(index, *keys)
        pipe.execute()
    return len(keys)


def init_app(app) -> None:
    app.session_interface = RedisSessionInterface()
