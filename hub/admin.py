"""Job health for staff: rq-dashboard mounted at /admin/rq, admins only, CSRF on every change."""
from __future__ import annotations

from flask import abort, current_app, g, redirect, request, url_for
from flask_wtf.csrf import generate_csrf
from rq.serializers import JSONSerializer

URL_PREFIX = "/admin/rq"

#: rq-dashboard's endpoints that change state; the blueprint itself checks nobody.
STATE_CHANGING = {"rq_dashboard.delete_job_view", "rq_dashboard.requeue_job_view",
                  "rq_dashboard.requeue_all", "rq_dashboard.empty_queue", "rq_dashboard.compact_queue"}

# The dashboard page is built by inline scripts, which the hub's CSP forbids elsewhere.
DASHBOARD_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                 "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
                 "frame-ancestors 'none'")


def _guard():
    """Before every dashboard request, whatever its method: admins and super admins only."""
    if g.get("user") is None:
        if request.method == "GET":
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(401)
    if not g.user.is_admin:
        abort(403)
    if request.endpoint in STATE_CHANGING and request.method != "POST":
        abort(405)  # rq-dashboard also requeues on GET: no change without a POST and its CSRF check
    if (request.view_args or {}).get("instance_number", 0) != 0:
        abort(404)  # one Redis only; other instance numbers would raise inside rq-dashboard
    return None


def _after(response):
    if request.blueprint == "rq_dashboard":
        response.headers["Content-Security-Policy"] = DASHBOARD_CSP
        if g.get("user") is not None and g.user.is_admin and response.mimetype == "text/html":
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
    app.after_request(_after)
