"""The Assessment Partner API as Greenhouse calls it (docs/providers/greenhouse.md#assessment-api):
list_tests, send_test (one invitation and one email per take-home test), test_status and
response_error, each answering only the key's own organization."""
from __future__ import annotations

import pytest

from hub.activity import ActivityLine
from hub.assessments import services
from hub.extensions import db
from hub.mail import OutboundEmail
from plugins.wecp_greenhouse.models import Interview
from tests.hub.assessments.conftest import right_answers

from .conftest import BASE, GREENHOUSE, basic, callback, send_body


def interviews() -> list[Interview]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(Interview).order_by(Interview.created_at)))


def invitation_emails() -> list[OutboundEmail]:
    db.session.expire_all()
    return [e for e in db.session.scalars(db.select(OutboundEmail)) if e.idempotency_key.startswith("invitation:")]


def complete(interview: Interview, right: bool = True) -> str:
    """The candidate opens the link, answers and submits: the result's id."""
    token = services.invitation_url(interview.invitation_id).rsplit("/", 1)[1]
    services.start_invitation(token)
    test = services.get_test(interview.test_id)
    from hub.assessments.models import AssessmentTest

    answers = right_answers(db.session.get(AssessmentTest, test.id)) if right else {}
    result = services.complete_invitation(token, answers)
    db.session.commit()
    return result.id


def test_list_tests_is_a_top_level_array_of_the_keys_organization(app, hogwarts, durmstrang):
    answer = app.test_client().get(f"{BASE}/list_tests", headers=hogwarts.auth)
    assert answer.status_code == 200
    assert answer.json == [{"partner_test_id": str(hogwarts.test.id), "partner_test_name": "Hogwarts backend screen"}]
    assert app.test_client().get(f"{BASE}/list_tests", headers=basic("wcp_pk_nope")).status_code == 401


def test_send_test_sends_one_invitation_and_one_email_however_often_greenhouse_repeats_it(app, hogwarts):
    client = app.test_client()
    body = send_body(hogwarts.test.id)
    answers = [client.post(f"{BASE}/send_test", json=body, headers=hogwarts.auth) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    ids = {a.json["partner_interview_id"] for a in answers}
    assert len(ids) == 1 and set(answers[0].json) == {"partner_interview_id"}
    (interview,) = interviews()
    assert interview.id in ids and interview.callback_url == callback()
    assert (interview.candidate_id, interview.application_id) == (17681532, 26234709)
    assert interview.candidate_name == "Harry Potter" and interview.sent_by == "recruiter@hogwarts.example"
    (email,) = invitation_emails()
    assert email.to == "hpotter@hogwarts.example"
    # The email names the employer, as every invitation does.
    assert "Hogwarts" in email.text and "Hogwarts backend screen" in email.text
    lines = db.session.scalars(db.select(ActivityLine).filter_by(plugin_key="wecp_greenhouse", kind="invitation")).all()
    assert [(line.subject_ref, line.status) for line in lines] == [(interview.id, "ok")]
    # Another take-home test (another url): another interview and email.
    other = client.post(f"{BASE}/send_test", json=send_body(hogwarts.test.id, number=999), headers=hogwarts.auth)
    assert other.json["partner_interview_id"] not in ids
    assert len(interviews()) == 2 and len(invitation_emails()) == 2


def test_a_send_without_url_is_the_same_send_for_the_same_test_candidate_and_application(app, hogwarts):
    client = app.test_client()
    body = send_body(hogwarts.test.id, url=None)
    first = client.post(f"{BASE}/send_test", json=body, headers=hogwarts.auth).json
    assert client.post(f"{BASE}/send_test", json=body, headers=hogwarts.auth).json == first
    other = dict(body, candidate=dict(body["candidate"], email="ron@hogwarts.example"))
    assert client.post(f"{BASE}/send_test", json=other, headers=hogwarts.auth).json != first
    assert len(invitation_emails()) == 2


def test_send_test_reads_numbers_nulls_and_unknown_fields_as_greenhouse_may_send_them(app, hogwarts):
    body = send_body(hogwarts.test.id, partner_test_id=hogwarts.test.id, sent_by=None, something_new={"x": 1})
    body["candidate"].update(preferred_name="The Chosen One", greenhouse_profile_url=None, another=True)
    answer = app.test_client().post(f"{BASE}/send_test", json=body, headers=hogwarts.auth)
    assert answer.status_code == 200, answer.json
    (interview,) = interviews()
    assert interview.candidate_name == "The Chosen One Potter" and interview.profile_url is None
    assert interview.sent_by is None


@pytest.mark.parametrize("change, status, words", [
    (lambda b: b["candidate"].pop("email"), 422, "candidate.email"),
    (lambda b: b["candidate"].update(email="not-an-address"), 422, "candidate.email"),
    (lambda b: b.pop("candidate"), 422, "candidate"),
    (lambda b: b.update(candidate="Harry"), 422, "candidate"),
    (lambda b: b.update(partner_test_id="../1"), 422, "partner_test_id"),
    (lambda b: b.pop("partner_test_id"), 422, "partner_test_id"),
    (lambda b: b.update(partner_test_id="987654"), 404, "list_tests"),
    (lambda b: b.update(url="https://evil.example/steal"), 422, "url"),
    (lambda b: b.update(url="javascript:alert(1)"), 422, "url"),
    (lambda b: b.update(url=f"{GREENHOUSE.replace('//', '//user:pw@')}/x"), 422, "url"),
    (lambda b: b.update(sent_by="x" * 400), 422, "sent_by"),
])
def test_send_test_refuses_a_bad_body_with_a_clear_json_error_and_stores_nothing(app, hogwarts, change, status, words):
    body = send_body(hogwarts.test.id)
    change(body)
    answer = app.test_client().post(f"{BASE}/send_test", json=body, headers=hogwarts.auth)
    assert answer.status_code == status and answer.is_json
    assert words in answer.json["error"]
    assert interviews() == [] and invitation_emails() == []
    # The admin reads why in the activity log.
    (line,) = db.session.scalars(db.select(ActivityLine).filter_by(plugin_key="wecp_greenhouse")).all()
    assert line.status == "failed" and "refused, nothing sent" in line.message and words in line.message


def test_send_test_with_a_body_that_is_not_an_object_is_a_json_400(app, hogwarts):
    client = app.test_client()
    for data in (b"[1, 2]", b"{not json", b""):
        answer = client.post(f"{BASE}/send_test", data=data, headers={**hogwarts.auth, "Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json == {"error": "the body must be a JSON object"}
    assert len(db.session.scalars(db.select(ActivityLine).filter_by(status="failed")).all()) == 3


def test_another_organizations_test_cannot_be_sent_with_this_key(app, hogwarts, durmstrang):
    answer = app.test_client().post(f"{BASE}/send_test", json=send_body(durmstrang.test.id), headers=hogwarts.auth)
    assert answer.status_code == 404 and interviews() == []


def test_test_status_follows_the_candidate_to_a_complete_result_with_score_and_report(app, hogwarts, durmstrang):
    client = app.test_client()
    ident = client.post(f"{BASE}/send_test", json=send_body(hogwarts.test.id), headers=hogwarts.auth).json[
        "partner_interview_id"]

    def status(headers=hogwarts.auth, value=ident):
        return client.get(f"{BASE}/test_status", query_string={"partner_interview_id": value}, headers=headers)

    assert status().json == {"partner_status": "sent"}
    (interview,) = interviews()
    services.start_invitation(services.invitation_url(interview.invitation_id).rsplit("/", 1)[1])
    db.session.commit()
    assert status().json == {"partner_status": "started"}
    result_id = complete(interview)
    answer = status().json
    assert answer["partner_status"] == "complete" and answer["partner_score"] == 100
    assert answer["partner_profile_url"] == services.report_url(result_id)
    assert client.get(answer["partner_profile_url"].removeprefix("http://hub.test")).status_code == 200
    assert answer["metadata"]["Result"] == "Passed" and answer["metadata"]["Test"] == "Hogwarts backend screen"
    assert all(isinstance(v, str | int | float | bool) or v is None for v in answer["metadata"].values())
    # Another organization's key, a malformed id, an unknown id: 404; no id: 400.
    assert status(headers=durmstrang.auth).status_code == 404
    assert status(value="1 OR 1=1").status_code == 404
    assert status(value="00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get(f"{BASE}/test_status", headers=hogwarts.auth).status_code == 400


def test_a_revoked_report_link_is_never_answered_as_complete(app, hogwarts):
    client = app.test_client()
    ident = client.post(f"{BASE}/send_test", json=send_body(hogwarts.test.id), headers=hogwarts.auth).json[
        "partner_interview_id"]
    result_id = complete(interviews()[0])
    from hub.assessments.models import Result

    db.session.get(Result, result_id).revoke_report_link()  # as an admin does on the result page
    db.session.commit()
    answer = client.get(f"{BASE}/test_status", query_string={"partner_interview_id": ident}, headers=hogwarts.auth)
    assert answer.json["partner_status"] != "complete" and "partner_profile_url" not in answer.json


def test_response_error_is_stored_in_words_for_the_admin_and_answered_200(app, hogwarts):
    client = app.test_client()
    ident = client.post(f"{BASE}/send_test", json=send_body(hogwarts.test.id), headers=hogwarts.auth).json[
        "partner_interview_id"]
    report = {"api_call": "test_status", "errors": ["partner_status is 'complete' but partner_profile url is missing"],
              "partner_test_id": str(hogwarts.test.id), "partner_test_name": "Backend", "partner_interview_id": ident,
              "candidate_email": "hpotter@hogwarts.example"}
    answer = client.post(f"{BASE}/response_error", json=report, headers=hogwarts.auth)
    assert answer.status_code == 200 and answer.json == {"status": 200}
    # Only api_call and errors, or even less: still stored, still 200.
    assert client.post(f"{BASE}/response_error", json={"api_call": "list_tests"}, headers=hogwarts.auth).status_code == 200
    lines = db.session.scalars(db.select(ActivityLine).filter_by(kind="greenhouse_error").order_by(ActivityLine.id)).all()
    assert [line.message for line in lines] == [
        "Greenhouse could not use WeCP's answer to test_status: partner_status is 'complete' but "
        "partner_profile url is missing",
        "Greenhouse could not use WeCP's answer to list_tests: no details given"]
    assert lines[0].subject_ref == ident and lines[0].status == "failed"
    card = hogwarts.browser.get("/settings/integrations").get_data(as_text=True)
    assert "Greenhouse reported 2 times in the last week that it could not use an answer of WeCP" in card
    log = hogwarts.browser.get("/settings/integrations/wecp_greenhouse/activity").get_data(as_text=True)
    assert "partner_status is &#39;complete&#39; but partner_profile url is missing" in log


def test_a_profile_link_off_greenhouses_hosts_is_never_shown_as_a_link(app, hogwarts):
    """The recruiter opens the candidate from the activity log: only a Greenhouse address is kept."""
    body = send_body(hogwarts.test.id)
    body["candidate"]["greenhouse_profile_url"] = "javascript:alert(document.cookie)//people/1?application_id=2"
    assert app.test_client().post(f"{BASE}/send_test", json=body, headers=hogwarts.auth).status_code == 200
    (interview,) = interviews()
    assert interview.profile_url is None and interview.application_id is None
    log = hogwarts.browser.get("/settings/integrations/wecp_greenhouse/activity").get_data(as_text=True)
    assert "Harry Potter" in log and "javascript:" not in log


def test_concurrent_repeats_of_one_send_make_one_invitation_and_one_email(pg_app):
    """Greenhouse's bulk sends and retries arrive side by side (docs/providers/greenhouse.md#assessment-flow):
    eight requests at once for one take-home test, on PostgreSQL, in threads of their own."""
    from concurrent.futures import ThreadPoolExecutor

    from hub.auth import create_user
    from tests.hub.assessments.conftest import make_test

    from .conftest import issue_key

    admin = create_user("Hogwarts", "admin@hogwarts.example", "correct horse battery", "admin")
    db.session.commit()
    _, key, _ = issue_key(pg_app, admin)
    test = make_test(admin.organization_id)
    body = send_body(test.id)

    def post(_):
        return pg_app.test_client().post(f"{BASE}/send_test", json=body, headers=basic(key))

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json["partner_interview_id"] for a in answers}) == 1
    assert len(interviews()) == 1 and len(invitation_emails()) == 1


def test_a_bulk_send_is_not_cut_by_the_hubs_default_key_limit(app, hogwarts):
    """Greenhouse's keys have their own limit, above the hub's default: a burst of one customer's
    bulk send is answered, not refused (docs/performance.md, G1)."""
    app.config["HUB_PARTNER_CALLS_PER_MINUTE"] = 2
    caller = app.test_client()
    assert {caller.get(f"{BASE}/list_tests", headers=hogwarts.auth).status_code for _ in range(5)} == {200}
