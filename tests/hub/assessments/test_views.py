from jinja2 import ChoiceLoader, DictLoader

from hub.assessments import services
from hub.assessments.models import AssessmentTest, Result
from hub.extensions import db
from hub.models import AuditEvent
from tests.conftest import csrf_token, sign_in
from tests.hub.assessments.conftest import invite, make_test, right_answers


def _form(token, **fields):
    data = {"csrf_token": token, "slots": "3", "title": "Go basics", "description": "",
            "pass_mark": "50", "time_limit_minutes": "15", "valid_days": "3", "action": "save"}
    data.update(fields)
    return data


def test_tests_page_is_in_the_navigation(admin_client):
    page = admin_client.get("/").get_data(as_text=True)
    assert 'href="/tests"' in page
    assert "No tests yet" in admin_client.get("/tests").get_data(as_text=True)


def test_create_a_test_through_the_form(admin_client, admin):
    token = csrf_token(admin_client, "/tests/new")
    response = admin_client.post("/tests/new", data=_form(
        token, **{"q-0-text": "Which keyword starts a goroutine?", "q-0-kind": "single",
                  "q-0-option-0": "go", "q-0-option-1": "", "q-0-option-2": "async",
                  "q-0-correct": "0",
                  "q-1-text": "Pick the integer types", "q-1-kind": "multiple",
                  "q-1-option-0": "int", "q-1-option-1": "string", "q-1-option-3": "uint8",
                  "q-1-correct": ["0", "3"]}))
    assert response.status_code == 302, response.get_data(as_text=True)
    test = db.session.scalar(db.select(AssessmentTest))
    assert response.headers["Location"] == f"/tests/{test.id}"
    assert (test.title, test.pass_mark, test.time_limit_minutes, test.valid_days) == ("Go basics", 50, 15, 3)
    assert test.organization_id == admin.organization_id
    assert [(q.options, q.correct, q.kind) for q in test.questions] == [
        (["go", "async"], [0], "single"), (["int", "string", "uint8"], [0, 2], "multiple")]
    page = admin_client.get(f"/tests/{test.id}").get_data(as_text=True)
    assert "Go basics" in page and "Pick the integer types" in page
    assert "Nobody has been invited" in page
    assert db.session.scalar(db.select(AuditEvent).filter_by(action="test.created")) is not None


def test_form_errors_are_shown_next_to_the_fields(admin_client):
    token = csrf_token(admin_client, "/tests/new")
    response = admin_client.post("/tests/new", data=_form(
        token, title="", pass_mark="120", time_limit_minutes="soon",
        **{"q-0-text": "Only one option", "q-0-option-0": "a", "q-0-correct": "0",
           "q-1-text": "No correct one", "q-1-option-0": "a", "q-1-option-1": "b"}))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Enter a title of at most 200 characters." in page
    assert "Must be greater than or equal to 0 and less than or equal to 100." in page
    assert "Not a valid integer." in page
    assert "Give between 2 and 10 options." in page
    assert "Mark at least one correct option." in page
    assert 'value="Only one option"' not in page and ">Only one option</textarea>" in page  # kept
    assert db.session.scalar(db.select(db.func.count(AssessmentTest.id))) == 0


def test_more_questions_adds_blocks_without_saving(admin_client):
    token = csrf_token(admin_client, "/tests/new")
    response = admin_client.post("/tests/new", data=_form(token, action="more",
                                                          **{"q-0-text": "Kept?"}))
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and ">Kept?</textarea>" in page
    assert 'name="q-3-text"' in page and 'name="slots" value="4"' in page
    assert db.session.scalar(db.select(db.func.count(AssessmentTest.id))) == 0


def test_member_edits_a_test_and_question_ids_stay(app, make_user):
    member = make_user(role="member", email="member@acme.example")
    test = make_test(member.organization_id)
    ids = [q.id for q in test.questions]
    client = app.test_client()
    sign_in(client, member.email)
    page = client.get(f"/tests/{test.id}/edit").get_data(as_text=True)
    assert 'value="Python basics"' in page and 'name="slots" value="4"' in page
    token = csrf_token(client, f"/tests/{test.id}/edit")
    data = {"csrf_token": token, "slots": "4", "title": "Python basics II", "description": "",
            "pass_mark": "70", "time_limit_minutes": "25", "valid_days": "7", "action": "save",
            "q-0-text": "What is 2 + 2?", "q-0-kind": "single", "q-0-option-0": "4",
            "q-0-option-1": "22", "q-0-correct": "0",
            "q-1-text": "gone", "q-1-option-0": "a", "q-1-option-1": "b", "q-1-correct": "0",
            "q-1-remove": "1",
            "q-2-text": "Is None falsy?", "q-2-kind": "single", "q-2-option-0": "yes",
            "q-2-option-1": "no", "q-2-correct": "0"}
    response = client.post(f"/tests/{test.id}/edit", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    test = db.session.get(AssessmentTest, test.id)
    assert test.title == "Python basics II" and test.pass_mark == 70
    assert [q.id for q in test.questions] == ids[:2]
    assert [q.options for q in test.questions] == [["4", "22"], ["yes", "no"]]


def test_test_page_lists_invitations_and_renders_integration_panels(app, admin_client, sample_test):
    app.jinja_env.loader = ChoiceLoader([
        DictLoader({"example/panel.html": '<section id="example-panel">Panel of {{ test.title }}</section>'}),
        app.jinja_env.loader])
    app.extensions["hub.test_page_panels"].append("example/panel.html")
    invitation, _ = invite(sample_test, name="<b>Ada</b>")
    services.start_invitation(invitation.token)
    result = services.complete_invitation(invitation.token, right_answers(sample_test))
    invite(sample_test, key="k2", name="Grace Hopper", email="grace@example.com")
    page = admin_client.get(f"/tests/{sample_test.id}").get_data(as_text=True)
    assert '<section id="example-panel">Panel of Python basics</section>' in page
    assert "&lt;b&gt;Ada&lt;/b&gt;" in page and "<b>Ada</b>" not in page
    assert "Grace Hopper" in page and "<td>Tiny Example</td>" in page and "opp-1" not in page  # #40, 9
    assert "Completed" in page and "Invited" in page
    assert f"/results/{result.id}" in page and "3/3 · passed" in page


def test_staff_result_page_and_report_link_revocation(app, admin_client, make_user, sample_test):
    invitation, _ = invite(sample_test)
    services.start_invitation(invitation.token)
    q1 = sample_test.questions[0]
    result = services.complete_invitation(invitation.token, {str(q1.id): ["0"]})
    url = services.report_url(result.id)
    path = url.removeprefix("http://hub.test")
    public = app.test_client()
    report = public.get(path)
    assert report.status_code == 200
    html = report.get_data(as_text=True)
    assert "0 / 3" in html and "Failed" in html and "Ada Lovelace" in html
    assert "candidate's answer" in html and "correct answer" in html and "What is 2 + 2?" in html

    member = make_user(role="member", email="member@acme.example")
    member_client = app.test_client()
    sign_in(member_client, member.email)
    token = csrf_token(member_client, f"/results/{result.id}")
    assert member_client.post(f"/results/{result.id}/revoke-link",
                              data={"csrf_token": token}).status_code == 403
    assert public.get(path).status_code == 200

    token = csrf_token(admin_client, f"/results/{result.id}")
    response = admin_client.post(f"/results/{result.id}/revoke-link", data={"csrf_token": token})
    assert response.status_code == 302
    assert public.get(path).status_code == 404
    assert "was revoked" in admin_client.get(f"/results/{result.id}").get_data(as_text=True)
    admin_client.post(f"/results/{result.id}/new-link", data={"csrf_token": token})
    db.session.expire_all()
    new_path = services.report_url(result.id).removeprefix("http://hub.test")
    assert new_path != path and public.get(new_path).status_code == 200
    assert public.get(path).status_code == 404


def test_organizations_cannot_see_each_others_tests_or_results(app, admin_client, make_user, sample_test):
    invitation, _ = invite(sample_test)
    services.start_invitation(invitation.token)
    result = services.complete_invitation(invitation.token, {})
    other = make_user(org="Other Org", role="admin", email="boss@other.example")
    client = app.test_client()
    sign_in(client, other.email)
    for path in (f"/tests/{sample_test.id}", f"/tests/{sample_test.id}/edit",
                 f"/results/{result.id}", f"/api/v1/tests/{sample_test.id}"):
        assert client.get(path).status_code == 404, path
    token = csrf_token(client, "/tests/new")
    assert client.post(f"/results/{result.id}/revoke-link",
                       data={"csrf_token": token}).status_code == 404
    assert client.post(f"/tests/{sample_test.id}/edit", data=_form(token)).status_code == 404
    assert "Python basics" not in client.get("/tests").get_data(as_text=True)
    assert client.get("/api/v1/tests").json == {"data": []}
    db.session.expire_all()
    assert db.session.get(Result, result.id).report_token_hash is not None


def test_pages_need_sign_in(client, sample_test):
    for path in ("/tests", "/tests/new", f"/tests/{sample_test.id}"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
