"""Staff pages: the tests list, create/edit forms, a test with its invitations, results, reports."""
from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from marshmallow import ValidationError

from ..auth import admin_required, get_scoped_or_404, login_required, scoped
from ..extensions import db
from ..models import audit
from .models import KINDS, AssessmentTest, Invitation, Result
from .schemas import AssessmentTestSchema
from .services import result_by_report_token, save_test

bp = Blueprint("assessments", __name__)

#: Option inputs per question on the form (the schema allows up to 10 through the API).
OPTION_SLOTS = 6
#: Empty question blocks a new test starts with; "More questions" adds this many again.
NEW_SLOTS = 3


@bp.route("/tests")
@login_required
def tests():
    rows = db.session.scalars(scoped(AssessmentTest).order_by(AssessmentTest.title)).all()
    return render_template("hub/assessments/tests.html", tests=rows)


@bp.route("/tests/new", methods=["GET", "POST"])
@login_required
def new_test():
    return _edit(None)


@bp.route("/tests/<int:test_id>/edit", methods=["GET", "POST"])
@login_required
def edit_test(test_id):
    return _edit(get_scoped_or_404(AssessmentTest, test_id))


@bp.route("/tests/<int:test_id>")
@login_required
def test(test_id):
    test = get_scoped_or_404(AssessmentTest, test_id)
    invitations = db.session.scalars(
        scoped(Invitation, test_id=test.id).order_by(Invitation.created_at.desc()).limit(200)).all()
    return render_template("hub/assessments/test.html", test=test, invitations=invitations,
                           panels=current_app.extensions["hub.test_page_panels"])


@bp.app_template_global("source_title")
def source_title(source: str) -> str:
    """An invitation's source as people call it: its plugin's title, not its key."""
    from ..registry import all_plugins

    plugin = all_plugins().get(source)
    return plugin.title if plugin is not None else source


@bp.route("/results/<result_id>")
@login_required
def result(result_id):
    result = get_scoped_or_404(Result, result_id)
    return render_template("hub/assessments/result.html", result=result, staff=True)


@bp.route("/results/<result_id>/revoke-link", methods=["POST"])
@admin_required
def revoke_report_link(result_id):
    result = get_scoped_or_404(Result, result_id)
    result.revoke_report_link()
    audit("result.report_link_revoked", organization_id=result.organization_id,
          user_id=g.user.id, target=f"result:{result.id}")
    db.session.commit()
    flash("The report link is revoked: it no longer opens the report.", "success")
    return redirect(url_for(".result", result_id=result.id))


@bp.route("/results/<result_id>/regrade", methods=["POST"])
@admin_required
def regrade(result_id):
    """Grade the answers again against the test as it is now (after its answer key was fixed)."""
    from .services import regrade_result

    result = get_scoped_or_404(Result, result_id)
    changed = regrade_result(result.id)
    if changed:
        audit("result.regraded", organization_id=result.organization_id, user_id=g.user.id,
              target=f"result:{result.id}")
    db.session.commit()
    flash(f"Re-graded: the score is now {result.score}/{result.max_score} ({result.percentage:.0f}%)."
          if changed else "Re-graded: the score is unchanged.", "success")
    return redirect(url_for(".result", result_id=result.id))


@bp.route("/results/<result_id>/new-link", methods=["POST"])
@admin_required
def new_report_link(result_id):
    result = get_scoped_or_404(Result, result_id)
    result.issue_report_link()
    audit("result.report_link_issued", organization_id=result.organization_id,
          user_id=g.user.id, target=f"result:{result.id}")
    db.session.commit()
    flash("A new report link is ready; any earlier link no longer works.", "success")
    return redirect(url_for(".result", result_id=result.id))


@bp.route("/r/<token>")
def report(token):
    """The detailed report behind the link in the ATS note: no sign-in, only the token."""
    from flask import current_app

    from ..ratelimit import limit_client

    limit_client("links", current_app.config["HUB_LINK_LOOKUPS_PER_MINUTE"])
    result = result_by_report_token(token)
    if result is None:
        abort(404, description="This report link is not valid, or it was revoked.")
    return render_template("hub/assessments/result.html", result=result, staff=False)


# ---------------------------------------------------------------------------------------------
# The test form: no JavaScript, a fixed number of question blocks, "More questions" adds blocks.


def _edit(test: AssessmentTest | None):
    if request.method == "GET":
        form = _form_from_test(test)
        return render_template("hub/assessments/edit.html", test=test, form=form, errors={},
                               kinds=KINDS, option_slots=OPTION_SLOTS)
    form, data, slot_of = _form_from_request()
    errors = {}
    if request.form.get("action") == "more":
        form["questions"] += [_blank_question() for _ in range(NEW_SLOTS)]
    else:
        try:
            valid = AssessmentTestSchema().load(data)
        except ValidationError as exc:
            errors = _errors_by_slot(exc.messages, slot_of)
        else:
            saved = save_test(g.user.organization_id, valid, test, g.user.id)
            db.session.flush()
            audit("test.saved" if test else "test.created", organization_id=saved.organization_id,
                  user_id=g.user.id, target=f"assessment_test:{saved.id}")
            db.session.commit()
            flash("Test saved.", "success")
            return redirect(url_for(".test", test_id=saved.id))
    status = 422 if errors else 200
    return render_template("hub/assessments/edit.html", test=test, form=form, errors=errors,
                           kinds=KINDS, option_slots=OPTION_SLOTS), status


def _blank_question() -> dict:
    return {"text": "", "kind": "single", "options": [""] * OPTION_SLOTS, "correct": set()}


def _form_from_test(test: AssessmentTest | None) -> dict:
    if test is None:
        return {"title": "", "description": "", "pass_mark": 60, "time_limit_minutes": 30,
                "valid_days": 7, "questions": [_blank_question() for _ in range(NEW_SLOTS)]}
    questions = []
    for q in test.questions:
        options = list(q.options) + [""] * max(0, OPTION_SLOTS - len(q.options))
        questions.append({"text": q.text, "kind": q.kind, "options": options,
                          "correct": set(q.correct)})
    return {"title": test.title, "description": test.description, "pass_mark": test.pass_mark,
            "time_limit_minutes": test.time_limit_minutes, "valid_days": test.valid_days,
            "questions": questions + [_blank_question()]}


def _int_or_text(value: str):
    value = value.strip()
    return int(value) if value.isdigit() else value


def _form_from_request() -> tuple[dict, dict, dict]:
    """Read the posted form: what to show again, the data for the schema, and slot numbers."""
    f = request.form
    try:
        slots = min(int(f.get("slots", NEW_SLOTS)), 200)
    except ValueError:
        abort(400)
    form = {k: f.get(k, "") for k in ("title", "description", "pass_mark", "time_limit_minutes",
                                      "valid_days")}
    data = {"title": form["title"].strip(), "description": form["description"].strip(),
            **{k: _int_or_text(form[k]) for k in ("pass_mark", "time_limit_minutes", "valid_days")}}
    form["questions"], data["questions"], slot_of = [], [], {}
    for i in range(slots):
        text = f.get(f"q-{i}-text", "").strip()
        kind = f.get(f"q-{i}-kind", "single")
        options = [f.get(f"q-{i}-option-{j}", "").strip() for j in range(OPTION_SLOTS)]
        correct = {int(v) for v in f.getlist(f"q-{i}-correct") if v.isdigit()}
        if f.get(f"q-{i}-remove") or not text and not any(options):
            continue  # a blank block, or one the user removed
        form["questions"].append({"text": text, "kind": kind, "options": options,
                                  "correct": correct})
        kept = [j for j in range(OPTION_SLOTS) if options[j]]
        slot_of[len(data["questions"])] = len(form["questions"]) - 1
        data["questions"].append({"text": text, "kind": kind, "options": [options[j] for j in kept],
                                  "correct": [kept.index(j) for j in sorted(correct) if j in kept]})
    return form, data, slot_of


def _errors_by_slot(messages: dict, slot_of: dict) -> dict:
    """Flatten marshmallow messages to ``{"title": [...], "q-0": {...}}`` for the template."""
    errors = {}
    for field, value in messages.items():
        if field != "questions":
            errors[field] = value if isinstance(value, list) else [str(value)]
        elif isinstance(value, list):
            errors["questions"] = value
        else:
            for index, question_errors in value.items():
                errors[f"q-{slot_of.get(int(index), index)}"] = question_errors
    return errors
