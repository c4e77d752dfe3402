"""Liveness and readiness probes for load balancers and orchestrators."""
from __future__ import annotations

from flask import Blueprint, g, jsonify

from .extensions import db, get_redis

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.route("/readyz")
def readyz():
    checks = {}
    try:
        db.session.execute(db.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:
        db.session.rollback()
        checks["database"] = "unavailable"
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except Exception:
        checks["redis"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if ready else "unavailable"}
    if g.get("operator") is not None:
        body["checks"] = checks  # which part is down: for the people who run the hub only
    return jsonify(body), 200 if ready else 503
