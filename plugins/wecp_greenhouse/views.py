"""The Greenhouse integration's page: where results go through Harvest (when it is connected),
which stage candidates who pass move to per job, and whether the score becomes a note.

Members read what is set; admins change it from Greenhouse's own lists of jobs and stages (read
when the form opens, and again when it is saved: a stage id never comes from the form alone).
"""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from hub.auth import admin_required, login_required
from hub.connections import TokenRefreshError, connection_of
from hub.extensions import db
from hub.jobs import Defer
from hub.models import audit
from hub.plugin import ConnectionUnusable

from . import harvest
from .followup import PROVIDER, moves_of, notes_on
from .harvest import HarvestError
from .models import KEY

bp = Blueprint(KEY, __name__, template_folder="templates")


def _harvest():
    conn = connection_of(g.user.organization_id, KEY, PROVIDER)
    return conn if conn is not None and conn.usable else None


@bp.get("/")
@login_required
def index():
    conn = connection_of(g.user.organization_id, KEY, PROVIDER)
    return render_template("wecp_greenhouse/index.html", harvest=conn,
                           usable=conn is not None and conn.usable,
                           moves=moves_of(conn) if conn else {}, notes=notes_on(conn) if conn else True)


def _lists(conn) -> tuple[list[dict], dict[int, list[dict]]]:
    """Greenhouse's open jobs and each one's stages; raises ``Unreadable`` with words."""
    try:
        return harvest.open_jobs(conn.id), harvest.job_stages(conn.id)
    except Defer as exc:
        raise Unreadable(f"Greenhouse asks WeCP to wait {exc.seconds:.0f} s before reading its jobs. "
                         "Try again then.") from None
    except (HarvestError, TokenRefreshError) as exc:
        raise Unreadable("Greenhouse's jobs and stages could not be read just now "
                         f"({getattr(exc, 'status', None) or type(exc).__name__}). Try again in a minute.") from None
    except ConnectionUnusable as exc:
        raise Unreadable(f"Harvest cannot be used: {exc.reason}.") from None


class Unreadable(Exception):
    pass


@bp.route("/harvest", methods=["GET", "POST"])
@admin_required
def harvest_settings():
    conn = _harvest()
    if conn is None:
        flash("Connect Greenhouse Harvest first (Settings › Integrations, Greenhouse's card).", "error")
        return redirect(url_for(".index"))
    try:
        jobs, stages = _lists(conn)
    except Unreadable as exc:
        flash(str(exc), "error")
        return redirect(url_for(".index"))
    if request.method == "POST":
        picked, refused = {}, []
        for job in jobs:
            chosen = request.form.get(f"job-{job['id']}", "")
            if not chosen:
                continue
            stage = next((s for s in stages.get(job["id"], []) if str(s["id"]) == chosen), None)
            if stage is None:
                refused.append(str(job.get("name") or job["id"]))
                continue
            picked[str(job["id"])] = {"stage_id": stage["id"], "stage": str(stage.get("name") or stage["id"])[:200],
                                      "job": str(job.get("name") or job["id"])[:200]}
        if refused:
            flash("Nothing was saved: the stage picked for " + ", ".join(refused) + " is not one of its stages "
                  "in Greenhouse any more. Pick again.", "error")
            return redirect(url_for(".harvest_settings"))
        conn.data = {**(conn.data or {}), "move_to": picked, "notes": request.form.get("notes") == "on"}
        audit("wecp_greenhouse.harvest_settings", organization_id=conn.organization_id, user_id=g.user.id,
              target=conn.id, jobs=len(picked), notes=conn.data["notes"])
        db.session.commit()
        flash("Saved. Candidates who pass are moved only forward, and only while their application is active.",
              "success")
        return redirect(url_for(".index"))
    return render_template("wecp_greenhouse/harvest.html", jobs=jobs, stages=stages, moves=moves_of(conn),
                           notes=notes_on(conn))
