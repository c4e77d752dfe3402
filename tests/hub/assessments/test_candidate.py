import re
from datetime import timedelta

import pytest

from hub.assessments import services
from hub.assessments.models import Invitation, Result
from hub.extensions import db
from hub.models import utcnow
from tests.hub.assessments.conftest import invite


def _path(invitation):
    return services.invitation_url(invitation.id).removeprefix("http://hub.test")


def _csrf(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def candidate(app):
    """A browser with no account, as the candidate has."""
    return app.test_client()


def test_the_candidate_journey(app, candidate, sample_test):
    invitation, _ = invite(sample_test, name="Ada <Lovelace>")
    path = _path(invitation)
    intro = candidate.get(path)
    html = intro.get_data(as_text=True)
    assert intro.status_code == 200
    assert "Python basics" in html and "WeCP" in html and "20 minutes" in html
    assert invitation.expires_at.strftime("%d %b %Y, %H:%M UTC") in html
    ours = '<script src="/static/candidate.js" defer></script>'  # the pages' own static script
    assert "Ada &lt;Lovelace&gt;" in html and "<script" not in html.replace(ours, "")
    assert candidate.post(path + "/start").status_code == 400  # CSRF applies without sign-in

    response = candidate.post(path + "/start", data={"csrf_token": _csrf(html)})
    assert response.status_code == 302 and response.headers["Location"] == path
    questions = candidate.get(path).get_data(as_text=True)
    assert "Question 1 of 3" in questions and 'type="radio"' in questions
    assert 'type="checkbox"' in questions and "<script" not in questions.replace(ours, "")
    q1, q2, q3 = sample_test.questions
    response = candidate.post(path + "/submit", data={
        "csrf_token": _csrf(questions), f"q-{q1.id}": "1", f"q-{q2.id}": ["0", "2"],
        f"q-{q3.id}": "1"})
    assert response.status_code == 302 and response.headers["Location"] == path + "/done"
    done = candidate.get(path + "/done")
    assert done.status_code == 200 and "Your answers to “Python basics” were submitted" in done.get_data(as_text=True)

    result = db.session.scalar(db.select(Result))
    assert (result.score, result.max_score, result.passed) == (2, 3, True)
    assert result.answers == {str(q1.id): [1], str(q2.id): [0, 2], str(q3.id): [1]}
    assert "score" not in done.get_data(as_text=True).lower()  # candidates do not see grades

    reused = candidate.get(path)
    assert reused.status_code == 410 and "already completed" in reused.get_data(as_text=True)
    again = candidate.post(path + "/submit", data={"csrf_token": _csrf(questions), f"q-{q1.id}": "0"})
    assert again.status_code == 410
    assert candidate.post(path + "/start", data={"csrf_token": _csrf(questions)}).status_code == 410
    db.session.expire_all()
    assert db.session.scalar(db.select(db.func.count(Result.id))) == 1
    assert db.session.get(Result, result.id).answers[str(q1.id)] == [1]


def test_expired_link_gets_a_clear_page(app, candidate, sample_test):
    invitation, _ = invite(sample_test)
    path = _path(invitation)
    token = _csrf(candidate.get(path).get_data(as_text=True))
    invitation.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    page = candidate.get(path)
    assert page.status_code == 410 and "This invitation has expired" in page.get_data(as_text=True)
    assert candidate.post(path + "/start", data={"csrf_token": token}).status_code == 410
    db.session.expire_all()
    assert db.session.get(Invitation, invitation.id).started_at is None


def test_late_submission_is_refused(app, candidate, sample_test):
    invitation, _ = invite(sample_test)
    path = _path(invitation)
    token = _csrf(candidate.get(path).get_data(as_text=True))
    candidate.post(path + "/start", data={"csrf_token": token})
    db.session.expire_all()
    invitation = db.session.get(Invitation, invitation.id)
    invitation.submit_by = utcnow() - timedelta(seconds=1)  # the limit and the grace are over
    db.session.commit()
    q1 = sample_test.questions[0]
    response = candidate.post(path + "/submit", data={"csrf_token": token, f"q-{q1.id}": "1"})
    assert response.status_code == 410
    assert "The time for this test is over" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Result.id))) == 0
    db.session.expire_all()
    assert db.session.get(Invitation, invitation.id).status == "expired"
    again = candidate.get(path)
    assert again.status_code == 410 and "The time for this test is over" in again.get_data(as_text=True)


def test_unknown_links_show_nothing(candidate, sample_test):
    invite(sample_test)
    for path in ("/t/not-a-token", "/t/" + "a" * 300):
        page = candidate.get(path)
        assert page.status_code == 404 and "This link is not valid" in page.get_data(as_text=True)
        assert "Python basics" not in page.get_data(as_text=True)
    assert candidate.get("/t/not-a-token/done").status_code == 302


def test_a_link_shows_only_its_own_invitation(candidate, sample_test):
    ada, _ = invite(sample_test, key="a", name="Ada Lovelace")
    grace, _ = invite(sample_test, key="g", name="Grace Hopper", email="grace@example.com")
    page = candidate.get(_path(ada)).get_data(as_text=True)
    assert "Ada Lovelace" in page and "Grace Hopper" not in page


def test_code_in_a_question_is_shown_as_code_and_nothing_else_becomes_markup(app, candidate, admin):
    from hub.assessments import inline_code
    from tests.hub.assessments.conftest import make_test

    assert str(inline_code("What does `len(x)` return for <b>x</b>?")) == \
        "What does <code>len(x)</code> return for &lt;b&gt;x&lt;/b&gt;?"
    assert str(inline_code("`<script>alert(1)</script>`")) == "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>"
    assert str(inline_code("a ` alone")) == "a ` alone"
    test = make_test(admin.organization_id, questions=[
        {"text": "What does `len([1, 2])` return?", "kind": "single", "options": ["`1`", "`2`"], "correct": [1]}])
    invitation, _ = invite(test)
    path = _path(invitation)
    intro = candidate.get(path).get_data(as_text=True)
    candidate.post(path + "/start", data={"csrf_token": _csrf(intro)})
    page = candidate.get(path).get_data(as_text=True)
    assert "What does <code>len([1, 2])</code> return?" in page and "<span><code>2</code></span>" in page
