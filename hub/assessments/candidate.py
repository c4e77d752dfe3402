"""The candidate's pages behind the emailed link /t/<token>: intro, start, questions, thank you.

No sign-in: the unguessable token is the only key, and each page shows only its own invitation.
Plain forms, no JavaScript; the time limit is checked on the server when the answers arrive.
"""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, redirect, render_template, request, url_for

from ..models import utcnow
from .models import CANCELLED, COMPLETED, STARTED
from .services import (
    InvitationError,
    InvitationExpired,
    complete_invitation,
    invitation_by_token,
    start_invitation,
)

bp = Blueprint("candidate", __name__, url_prefix="/t")


@bp.before_request
def _limit_lookups():
    """Every candidate-link request looks a token up: guessing them is slowed per address."""
    from flask import current_app

    from ..ratelimit import limit_client

    limit_client("links", current_app.config["HUB_LINK_LOOKUPS_PER_MINUTE"])


@bp.route("/<token>")
def show(token):
    invitation = invitation_by_token(token)
    if invitation is None:
        return _closed("not_found")
    now = utcnow()
    if invitation.status == COMPLETED:
        return _closed("used", invitation)
    if invitation.status == CANCELLED:
        return _closed("cancelled", invitation)
    if invitation.is_expired(now):
        return _closed("time_up" if invitation.started_at else "expired", invitation)
    if invitation.status == STARTED:
        # The page shows the limit itself; the server allows GRACE more before refusing.
        submit_before = invitation.started_at + timedelta(minutes=invitation.test.time_limit_minutes)
        return _page("hub/assessments/candidate/questions.html", invitation=invitation,
                               test=invitation.test, token=token, submit_before=submit_before)
    return _page("hub/assessments/candidate/intro.html", invitation=invitation,
                           test=invitation.test, token=token)


@bp.route("/<token>/start", methods=["POST"])
def start(token):
    try:
        start_invitation(token)
    except InvitationError as exc:
        return _closed_for(exc, token)
    return redirect(url_for(".show", token=token))


@bp.route("/<token>/submit", methods=["POST"])
def submit(token):
    invitation = invitation_by_token(token)
    if invitation is not None and invitation.status == COMPLETED:
        return _closed("used", invitation)
    answers = {key[2:]: request.form.getlist(key) for key in request.form if key.startswith("q-")}
    try:
        complete_invitation(token, answers)
    except InvitationError as exc:
        return _closed_for(exc, token)
    return redirect(url_for(".done", token=token))


@bp.route("/<token>/done")
def done(token):
    invitation = invitation_by_token(token)
    if invitation is None or invitation.status != COMPLETED:
        return redirect(url_for(".show", token=token))
    return _page("hub/assessments/candidate/done.html", invitation=invitation,
                           test=invitation.test)


def _closed_for(exc: InvitationError, token: str):
    reason = "time_up" if isinstance(exc, InvitationExpired) and exc.time_up else exc.reason
    if reason == "not_started":
        return redirect(url_for(".show", token=token))
    return _closed(reason, invitation_by_token(token))


def _page(template: str, **context):
    """A candidate page, told who is asking (the employer, the job) and whether replying to the
    invitation email reaches them."""
    invitation = context.get("invitation")
    organization = invitation.organization if invitation is not None else None
    return render_template(template, employer=organization.sender_name if organization else None,
                           job=invitation.job_title if invitation is not None else None,
                           reply_to=organization.email_reply_to if organization else None, **context)


def _closed(reason: str, invitation=None):
    """One clear page per way a link can no longer be used; 404 for unknown, 410 for the rest."""
    status = 404 if reason == "not_found" else 410
    return _page("hub/assessments/candidate/closed.html", reason=reason,
                           invitation=invitation, test=invitation.test if invitation else None), status
