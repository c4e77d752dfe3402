"""Settings › Work needing attention: an organization's failed and paused durable work, with Retry.

Every kind of durable work (``hub.outbox``) of the hub and its loaded plugins, limited to the
signed-in admin's organization (``of_organization``). Failed rows can be run again; paused rows
wait for their connection and say so. The operators' job dashboard shows every organization's
jobs and is theirs alone; this page is the organization's own view.
"""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, url_for

from .auth import admin_required
from .converters import BoundedIntConverter
from .extensions import db
from .outbox import FAILED, PAUSED, WorkKind, active_kinds, of_organization, retry_failed, work_counts

bp = Blueprint("work", __name__)


@bp.app_template_global("work_counts")
def _work_counts(organization_id: int) -> dict:
    return work_counts(organization_id)

#: Rows shown per kind, newest first.
LIMIT = 100


def _kind(name: str) -> WorkKind:
    kind = next((k for k in active_kinds() if k.name == name), None)
    if kind is None or of_organization(kind, g.user.organization_id) is None:
        abort(404)
    return kind


def _row_id(kind: WorkKind, text: str):
    """The route's row id in the type of the kind's key, or 404 (never an error of the database)."""
    column = kind.model.__mapper__.primary_key[0]
    if column.type.python_type is int:
        # The bound of the hub's <int:…> routes; "²".isdigit() is true too, hence isascii.
        if not (text.isascii() and text.isdigit()) or int(text) > BoundedIntConverter.MAX:
            abort(404)
        return int(text)
    if len(text) > 64:
        abort(404)
    return text


def _about(kind: WorkKind, rows: list) -> dict:
    """The kind's words for its rows (the candidate, the job, a link); none when it has none or
    its description fails (logged: the page still lists the work)."""
    if kind.describe is None:
        return {}
    try:
        return kind.describe(rows)
    except Exception:  # a plugin's bug must not hide the organization's failed work
        current_app.logger.warning("hub.work.describe_failed kind=%s", kind.name, exc_info=True)
        return {}


@bp.route("/settings/work")
@admin_required
def index():
    org_id = g.user.organization_id
    sections = []
    for kind in sorted(active_kinds(), key=lambda k: k.title):
        mine = of_organization(kind, org_id)
        if mine is None:
            continue
        model = kind.model
        rows = db.session.scalars(sa.select(model).where(mine, model.status.in_((FAILED, PAUSED)))
                                  .order_by(model.due_at.desc()).limit(LIMIT)).all()
        if rows:
            sections.append({"kind": kind, "rows": rows, "about": _about(kind, rows)})
    return render_template("hub/work.html", sections=sections, FAILED=FAILED, PAUSED=PAUSED)


@bp.route("/settings/work/<kind_name>/<row_id>/retry", methods=["POST"])
@admin_required
def retry(kind_name: str, row_id: str):
    kind = _kind(kind_name)
    model = kind.model
    ident = _row_id(kind, row_id)
    mine = of_organization(kind, g.user.organization_id)
    if db.session.scalar(sa.select(model.id).where(model.id == ident, mine)) is None:
        abort(404)
    if retry_failed(kind, model.id == ident):
        flash(f"{kind.title}: running it again.", "success")
    else:
        flash(f"{kind.title}: nothing to retry (it is not failed any more).", "info")
    return redirect(url_for(".index"))
