"""Pages of the Lever integration: link a test to a posting, the activity log, its settings."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from hub import activity as activity_log
from hub.assessments import services as assessments
from hub.auth import admin_required, get_scoped_or_404, login_required
from hub.connections import TokenRefreshError
from hub.extensions import db
from hub.mail import OutboundEmail, delivery_problems, send_email
from hub.models import audit
from hub.outbox import FAILED, OPEN, PAUSED, PENDING, RUNNING, retry_failed
from hub.plugin import ConnectionUnusable
from hub.registry import get_plugin
from hub.settings import get_setting, set_setting

from . import activity, links
from .flow import post_note, tag_opportunity
from .lever import LeverError
from .models import Note, Tag

bp = Blueprint("wecp_lever", __name__, template_folder="templates", static_folder="static")


@bp.route("/")
@login_required
def index():
    org_id = g.user.organization_id
    notes = db.session.scalars(db.select(Note).filter(
        Note.organization_id == org_id, Note.status.in_((FAILED, *OPEN)))
        .order_by(Note.id.desc()).limit(50)).all()
    # Tags Lever has not accepted yet (an outage, a revoked connection): open ones are retried by
    # their jobs and the sweeper, failed ones wait for the admin's Retry.
    tags = db.session.scalars(db.select(Tag).filter(
        Tag.organization_id == org_id, Tag.status.in_((PENDING, RUNNING, PAUSED, FAILED)), Tag.attempts > 0)
        .order_by(Tag.id.desc()).limit(50)).all()
    plugin = get_plugin("wecp_lever")
    values = {s.key: get_setting(org_id, "wecp_lever", s.key) for s in plugin.settings}
    stage_options, stage_problem = _stage_options(org_id)
    saved_stage = (values.get(PASS_STAGE) or "").strip()
    if saved_stage and stage_options is not None and saved_stage not in dict(stage_options):
        # A stage id that Lever does not know (typed by hand before the picker, or since deleted
        # in Lever): every pass would be refused by Lever, so the page says so.
        stage_problem = (f"The stage saved for candidates who pass (“{saved_stage}”) is not one of Lever's "
                         f"stages, so nobody is moved. Pick a stage below, or “Never”.")
    return render_template("wecp_lever/index.html", activity=activity_log.page(org_id, plugin, request.args),
                           open_notes=notes, open_tags=tags, settings=plugin.settings, values=values,
                           names=activity_log.subject_names(org_id, plugin.key,
                                                            {r.opportunity_id for r in (*notes, *tags)}),
                           failed_emails=delivery_problems(org_id), stage_options=stage_options,
                           stage_problem=stage_problem, pass_stage_key=PASS_STAGE)


#: The setting whose value is one of Lever's stages, picked from Lever's list.
PASS_STAGE = "advance_on_pass_stage"


def _stage_options(org_id: int) -> tuple[list[tuple[str, str]] | None, str | None]:
    """("", "Never") and each Lever stage as (id, name); or None and why the list is unavailable."""
    try:
        stages = links.stages(org_id)
    except links.NotConnected as exc:
        return None, f"{exc} The stages to pick from come from Lever."
    except (LeverError, TokenRefreshError, ConnectionUnusable):
        return None, "Lever's stages could not be read just now, so this setting cannot be changed. Try again in a minute."
    return [("", "Never")] + [(st["id"], st.get("text") or st["id"]) for st in stages], None


@bp.route("/emails/<email_id>/retry", methods=["POST"])
@login_required
def retry_email(email_id):
    email = get_scoped_or_404(OutboundEmail, email_id)
    if retry_failed(send_email, OutboundEmail.id == email.id):
        flash(f"Sending the email to {email.to} again.", "success")
    return redirect(url_for(".index"))


@bp.route("/tests/<int:test_id>/link", methods=["GET", "POST"])
@login_required
def link(test_id):
    """“Link job posting from Lever”: pick a posting (searchable, closed hidden) and a stage."""
    org_id = g.user.organization_id
    test = assessments.get_test(test_id, org_id) or abort(404)
    query = request.values.get("q", "").strip()
    error = None
    if request.method == "POST":
        try:
            created = links.create_link(org_id, g.user.id, test.id, request.form.get("posting_id", ""),
                                        request.form.get("stage_id", ""))
        except links.LinkError as exc:
            error = str(exc)
        except (LeverError, TokenRefreshError, ConnectionUnusable):
            error = "Lever could not be reached. Try again in a moment."
        else:
            db.session.commit()
            flash(f"Linked to “{created.posting_text}” at stage “{created.stage_text}”. Candidates "
                  f"who apply from now on and reach that stage get this test.", "success")
            return redirect(url_for("assessments.test", test_id=test.id))
    try:
        postings, stages = links.postings(org_id, query), links.stages(org_id)
    except links.NotConnected as exc:
        flash(str(exc), "error")
        return redirect(url_for("settings.index"))
    except (LeverError, TokenRefreshError, ConnectionUnusable):
        postings, stages = [], []
        error = error or "Lever could not be reached. Try again in a moment."
    linked = {link.posting_id: link for link in links.links_of_test(org_id, test.id)}
    return render_template("wecp_lever/link.html", test=test, postings=postings, stages=stages,
                           query=query, error=error, linked=linked,
                           chosen=request.form.get("posting_id"), chosen_stage=request.form.get("stage_id")), \
        (409 if error and "already linked" in error else 400 if error else 200)


@bp.route("/links/<int:link_id>/unlink")
@login_required
def confirm_unlink(link_id):
    """What Unlink does, and who is still taking the test, before the member confirms it."""
    from .models import PostingLink

    link_row = get_scoped_or_404(PostingLink, link_id)
    test = assessments.get_test(link_row.test_id, g.user.organization_id) or abort(404)
    # Only this posting's candidates: the test may be linked to other postings too.
    open_invitations = assessments.open_invitation_count(
        g.user.organization_id, "wecp_lever", test.id,
        source_refs=activity.moved_from(g.user.organization_id, link_row.posting_id))
    return render_template("wecp_lever/unlink.html", link=link_row, test=test, open_invitations=open_invitations)


@bp.route("/links/<int:link_id>/unlink", methods=["POST"])
@login_required
def unlink(link_id):
    from .models import PostingLink

    link_row = get_scoped_or_404(PostingLink, link_id)
    test_id = link_row.test_id
    links.delete_link(g.user.organization_id, g.user.id, link_id)
    db.session.commit()
    flash("Unlinked. Candidates reaching that stage no longer get this test.", "success")
    return redirect(url_for("assessments.test", test_id=test_id))


@bp.route("/invitations/<invitation_id>/resend", methods=["POST"])
@login_required
def resend(invitation_id):
    """Send the invitation email again (a new email, the same link)."""
    invitation = assessments.get_invitation(invitation_id)
    if invitation is None or invitation.organization_id != g.user.organization_id:
        abort(404)
    try:
        assessments.resend_invitation(invitation.id)
    except ValueError as exc:
        flash(str(exc), "error")
    else:
        audit("invitation.resent", organization_id=invitation.organization_id, user_id=g.user.id,
              target=f"invitation:{invitation.id}")
        db.session.commit()
        flash(f"The invitation to {invitation.candidate_email} is being sent again.", "success")
    return redirect(url_for(".index"))


@bp.route("/notes/<int:note_id>/retry", methods=["POST"])
@login_required
def retry_note(note_id):
    note = get_scoped_or_404(Note, note_id)
    if retry_failed(post_note, Note.id == note.id):
        flash("The note is being posted again.", "success")
    return redirect(url_for(".index"))


@bp.route("/tags/<int:tag_id>/retry", methods=["POST"])
@login_required
def retry_tag(tag_id):
    tag = get_scoped_or_404(Tag, tag_id)
    if retry_failed(tag_opportunity, Tag.id == tag.id):
        flash("The tags are being written again.", "success")
    return redirect(url_for(".index"))


@bp.route("/settings", methods=["POST"])
@admin_required
def save_settings():
    org_id = g.user.organization_id
    plugin = get_plugin("wecp_lever")
    values = {}
    for setting in plugin.settings:
        if setting.type is bool:
            values[setting.key] = request.form.get(setting.key) == "on"
        elif setting.type is int:
            if setting.key not in request.form:  # a form of before the setting existed
                values[setting.key] = get_setting(org_id, "wecp_lever", setting.key)
                continue
            text = request.form.get(setting.key, "").strip()
            if not text.isascii() or not text.isdigit() or int(text) > 24 * 365:
                flash(f"Settings not saved: “{setting.label}” takes a whole number from 0 to {24 * 365}.", "error")
                return redirect(url_for(".index"))
            values[setting.key] = int(text)
        else:
            values[setting.key] = request.form.get(setting.key, "").strip()[:200]
    low, high = values.get("review_from"), values.get("review_to")
    if isinstance(low, int) and isinstance(high, int):
        # A band of percentages, read "from ≤ score < to"; the same number twice turns it off.
        if low > 100 or high > 100:
            flash("Settings not saved: the “needs review” band is in percent, from 0 to 100.", "error")
            return redirect(url_for(".index"))
        if high < low:
            flash(f"Settings not saved: the “needs review” band ends ({high} %) below where it starts "
                  f"({low} %). Put the lower score first, or the same number twice to turn it off.", "error")
            return redirect(url_for(".index"))
    stage = values[PASS_STAGE]
    if stage != (get_setting(org_id, "wecp_lever", PASS_STAGE) or "").strip():
        # Checked against Lever's own list now, not when the first candidate passes.
        options, problem = _stage_options(org_id)
        if options is None:
            flash(f"Settings not saved: {problem}", "error")
            return redirect(url_for(".index"))
        if stage not in dict(options):
            flash(f"Settings not saved: “{stage}” is not one of Lever's stages. Pick one from the list.", "error")
            return redirect(url_for(".index"))
    for key, value in values.items():
        set_setting(org_id, "wecp_lever", key, value)
    audit("wecp_lever.settings_changed", organization_id=org_id, user_id=g.user.id)
    db.session.commit()
    flash("Settings saved.", "success")
    return redirect(url_for(".index"))
