import copy

import pytest

from hub.assessments.models import AssessmentTest
from hub.extensions import db
from hub.models import ApiToken
from tests.conftest import csrf_token
from tests.hub.assessments.conftest import SAMPLE


@pytest.fixture
def bearer(admin):
    token, plaintext = ApiToken.issue(admin, "tests")
    db.session.add(token)
    db.session.commit()
    return {"Authorization": f"Bearer {plaintext}"}


def test_create_list_and_read_a_test(client, bearer, admin):
    response = client.post("/api/v1/tests", json=SAMPLE, headers=bearer)
    assert response.status_code == 201, response.json
    body = response.json["data"]
    assert body["title"] == "Python basics" and len(body["questions"]) == 3
    assert body["questions"][1]["correct"] == [0, 2]
    assert response.headers["Location"] == f"/api/v1/tests/{body['id']}"
    assert db.session.get(AssessmentTest, body["id"]).organization_id == admin.organization_id
    listed = client.get("/api/v1/tests", headers=bearer).json["data"]
    assert [(t["id"], t["question_count"]) for t in listed] == [(body["id"], 3)]
    assert client.get(f"/api/v1/tests/{body['id']}", headers=bearer).json["data"] == body
    assert client.get("/api/v1/tests/999", headers=bearer).status_code == 404


@pytest.mark.parametrize("change, field, message", [
    ({"colour": "blue"}, "colour", "Unknown field."),
    ({"pass_mark": "70"}, "pass_mark", "Not a valid integer."),
    ({"pass_mark": 101}, "pass_mark", "Must be greater than or equal to 0 and less than or equal to 100."),
    ({"time_limit_minutes": None}, "time_limit_minutes", "Field may not be null."),
    ({"questions": []}, "questions", "Add at least one question."),
    ({"title": ""}, "title", "Enter a title of at most 200 characters."),
])
def test_create_refuses_bad_fields_with_422(client, bearer, change, field, message):
    response = client.post("/api/v1/tests", json={**SAMPLE, **change}, headers=bearer)
    assert response.status_code == 422
    assert response.json["error"] == "invalid input"
    assert message in response.json["fields"][field]
    assert db.session.scalar(db.select(db.func.count(AssessmentTest.id))) == 0


def test_create_refuses_bad_questions(client, bearer):
    data = copy.deepcopy(SAMPLE)
    data["questions"][0]["correct"] = [7]
    data["questions"][1]["shuffle"] = True
    data["questions"][2]["correct"] = [0, 1]  # a one-answer question with two answers
    fields = client.post("/api/v1/tests", json=data, headers=bearer).json["fields"]["questions"]
    assert "must be one of the options" in fields["0"]["correct"][0]
    assert fields["1"] == {"shuffle": ["Unknown field."]}
    assert "exactly one correct option" in fields["2"]["correct"][0]


def test_create_refuses_a_body_that_is_not_a_json_object(client, bearer):
    for kwargs in ({"data": "title=x"}, {"json": [SAMPLE]}):
        response = client.post("/api/v1/tests", headers=bearer, **kwargs)
        assert response.status_code == 422 and "_schema" in response.json["fields"]


def test_cookie_calls_need_the_csrf_token(admin_client):
    assert admin_client.post("/api/v1/tests", json=SAMPLE).status_code == 400
    token = csrf_token(admin_client, "/tests")
    response = admin_client.post("/api/v1/tests", json=SAMPLE, headers={"X-CSRFToken": token})
    assert response.status_code == 201


def test_api_needs_authentication(client):
    assert client.get("/api/v1/tests").status_code == 401
    assert client.post("/api/v1/tests", json=SAMPLE,
                       headers={"Authorization": "Bearer hub_nope"}).status_code == 401
