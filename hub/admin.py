"""The job dashboard: rq-dashboard mounted at /admin/rq, for the hub's operators alone.

Operators (``hub.models.Operator``, made with ``hub operators add``) run the hub; the dashboard
shows every organization's jobs, so nobody else may learn it exists: an organization's admin, a
member and an anonymous caller get 404 on every URL and method of it. Changes need a POST with
the CSRF token. Jobs carry ids, keys and outcome codes only (``hub.jobs.check_arguments``,
``public_result``), because rq-dashboard prints job text unescaped.
"""
from __future__ import annotations

import re

from flask import abort, current_app, g, request
from flask_wtf.csrf import generate_csrf
from rq.serializers import JSONSerializer

URL_PREFIX = "/admin/rq"

#: rq-dashboard's endpoints that change state; the blueprint itself checks nobody.
STATE_CHANGING = {"rq_dashboard.delete_job_view", "rq_dashboard.requeue_job_view",
                  "rq_dashboard.requeue_all", "rq_dashboard.empty_queue", "rq_dashboard.compact_queue"}

# rq-dashboard builds its pages with inline scripts and compiles its underscore.js templates
# with ``new Function`` (so 'unsafe-eval'): its pages stay on "Loading..." under the hub's CSP.
# This relaxation is sent on the dashboard's URLs alone, which only operators reach, and every
# job's text there is ids and codes; the rest of the hub keeps ``hub.security.CSP``.
DASHBOARD_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
                 "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                 "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _allowed() -> bool:
    """The one rule of the dashboard: the caller is one of the hub's operators."""
    return g.get("operator") is not None


def _on_dashboard() -> bool:
    # Routing merges repeated slashes (``/admin//rq/`` redirects to ``/admin/rq/``), so every
    # spelling of a dashboard path is one: each must answer as an unknown path does (#39).
    path = re.sub("/{2,}", "/", request.path)
    return path == URL_PREFIX or path.startswith(URL_PREFIX + "/")


def _hide():
    """First of all the app's before-request functions (ahead of the CSRF check and of routing's
    405): on any dashboard path, whatever its method, a caller who is not an operator gets 404."""
    if not _on_dashboard():
        return None
    from .auth import load_user

    load_user()
    if not _allowed():
        abort(404)
    return None


def _guard():
    """Before every dashboard request: the checks of rq-dashboard's own routes."""
    if not _allowed():
        abort(404)
    if request.endpoint in STATE_CHANGING and request.method != "POST":
        abort(405)  # rq-dashboard also requeues on GET: no change without a POST and its CSRF check
    if (request.view_args or {}).get("instance_number", 0) != 0:
        abort(404)  # one Redis only; other instance numbers would raise inside rq-dashboard
    return None


#: Added at the top of each dashboard page: rq-dashboard has no way out, and its intro (a
#: paragraph of fixed height) covered its table on a phone (issue #40, 7). The dashboard's own
#: CSP allows inline styles.
_SIGN_OUT = ('<form method="post" action="/logout" class="hub-sign-out" style="display:flex;gap:.5rem;'
             'justify-content:flex-end;align-items:center;margin:0;padding:.25rem .75rem;font-size:.85rem;'
             'background:#f1f3f5"><input type="hidden" name="csrf_token" value="{token}">'
             '<span>{who} (operator)</span><button type="submit" class="btn btn-sm btn-outline-secondary">'
             'Sign out</button></form>'
             '<style>p.fixed.intro{{height:auto!important}}</style>')
_BODY = re.compile(r"<body[^>]*>")


def _with_sign_out(response):
    from markupsafe import escape

    body = response.get_data(as_text=True)
    opening = _BODY.search(body)
    if opening is None or "hub-sign-out" in body:
        return
    form = _SIGN_OUT.format(token=escape(generate_csrf()), who=escape(g.operator.email))
    response.set_data(body[:opening.end()] + form + body[opening.end():])


def _after(response):
    if request.blueprint == "rq_dashboard" and _allowed():
        response.headers["Content-Security-Policy"] = DASHBOARD_CSP
        if response.mimetype == "text/html":
            _with_sign_out(response)
            # rq-dashboard's scripts send the cookie `_csrf_token` as X-CSRFToken with each POST,
            # which the hub's CSRFProtect then checks like any form token.
            response.set_cookie("_csrf_token", generate_csrf(), path=URL_PREFIX, samesite="Strict",
                                secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))
    return response


def init_app(app) -> None:
    import rq_dashboard
    from rq_dashboard import web

    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", app.config["REDIS_URL"])
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 5000)
    web.config.serializer = JSONSerializer  # the hub's queues use JSON, not pickle
    web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
    # First among the blueprint's before-request functions, ahead of rq-dashboard's own.
    app.before_request_funcs.setdefault("rq_dashboard", []).insert(0, _guard)
    app.before_request_funcs.setdefault(None, []).insert(0, _hide)
    app.after_request(_after)
