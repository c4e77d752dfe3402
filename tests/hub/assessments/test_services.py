import threading
from datetime import timedelta

import pytest

from hub.assessments import services
from hub.assessments.models import EXPIRED, Invitation, Result
from hub.assessments.signals import invitation_completed
from hub.extensions import db
from hub.mail import OutboundEmail
from hub.models import utcnow
from tests.hub.assessments.conftest import invite, make_test, right_answers


def test_grading_counts_exact_matches_only(app, sample_test):
    q1, q2, q3 = sample_test.questions
    graded = services.grade(sample_test, {str(q1.id): ["1"], str(q2.id): [0], q3.id: 0})
    assert graded["score"] == 2 and graded["max_score"] == 3  # q2 misses one correct option
    assert graded["answers"] == {str(q1.id): [1], str(q2.id): [0], str(q3.id): [0]}
    assert [d["is_correct"] for d in graded["details"]] == [True, False, True]
    assert graded["percentage"] == 66.67 and graded["passed"] is True  # 60 % pass mark


def test_grading_ignores_invalid_options_and_unknown_questions(app, sample_test):
    q1 = sample_test.questions[0]
    graded = services.grade(sample_test, {str(q1.id): ["9", "x", -1], "999": [0]})
    assert graded["answers"][str(q1.id)] == [] and graded["score"] == 0
    assert graded["passed"] is False


def test_pass_mark_boundary_is_exact(app, admin):
    test = make_test(admin.organization_id, pass_mark=67)
    q1, q2, _ = test.questions
    two_of_three = {str(q1.id): [1], str(q2.id): [0, 2]}
    assert services.grade(test, two_of_three)["passed"] is False  # 66.67 % < 67 %
    test.pass_mark = 66
    assert services.grade(test, two_of_three)["passed"] is True


def test_create_invitation_is_idempotent_and_queues_one_email(app, sample_test):
    first, created = invite(sample_test)
    again, created_again = invite(sample_test)
    assert created is True and created_again is False and again.id == first.id
    assert db.session.scalar(db.select(db.func.count(Invitation.id))) == 1
    emails = db.session.scalars(db.select(OutboundEmail)).all()
    assert len(emails) == 1 and emails[0].idempotency_key == f"invitation:{first.id}"
    assert services.invitation_url(first.id) in emails[0].text
    assert services.invitation_email(first.id).id == emails[0].id
    assert first.expires_at - first.created_at == timedelta(days=sample_test.valid_days)


def test_invitation_token_is_stored_hashed(app, sample_test):
    invitation, _ = invite(sample_test)
    token = services.invitation_url(invitation.id).rsplit("/", 1)[1]
    assert len(token) >= 40
    raw = db.session.execute(db.text("SELECT token_hash, token_ciphertext FROM invitation")).one()
    assert token not in raw.token_hash and token not in raw.token_ciphertext
    assert services.invitation_by_token(token).id == invitation.id
    assert services.invitation_by_token(token[:-1] + "x") is None


def test_expired_invitation_is_replaced_by_a_fresh_one(app, sample_test):
    old, _ = invite(sample_test)
    old.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    new, created = invite(sample_test)
    assert created is True and new.id != old.id and new.generation == 1
    db.session.refresh(old)
    assert old.status == EXPIRED
    assert invite(sample_test)[0].id == new.id  # and the fresh one is idempotent again


def test_completed_invitation_is_never_replaced(app, sample_test):
    invitation, _ = invite(sample_test)
    token = invitation.token
    services.start_invitation(token)
    services.complete_invitation(token, right_answers(sample_test))
    again, created = invite(sample_test)
    assert created is False and again.id == invitation.id


def test_cancelling_withdraws_only_an_unstarted_invitation_once_and_its_unsent_email(app, sample_test):
    from hub.assessments.signals import invitation_cancelled

    heard = []

    def receiver(sender, **kwargs):
        heard.append(kwargs)

    invitation, _ = invite(sample_test)
    assert services.unstarted_invitations(sample_test.organization_id, "tiny_example", "opp-1") == [invitation.id]
    with invitation_cancelled.connected_to(receiver):
        assert services.cancel_invitation(invitation.id, "archived") is True
        assert services.cancel_invitation(invitation.id, "archived") is False  # once
        db.session.commit()
    assert heard == [{"invitation_id": invitation.id, "reason": "archived"}]
    db.session.refresh(invitation)
    assert invitation.status == "cancelled" and invitation.display_status() == "cancelled"
    [email] = db.session.scalars(db.select(OutboundEmail)).all()
    assert (email.status, email.outcome) == ("skipped", "cancelled")  # queued, never sent now
    assert services.unstarted_invitations(sample_test.organization_id, "tiny_example", "opp-1") == []
    with pytest.raises(services.InvitationCancelled):
        services.start_invitation(invitation.token)
    # The same key invites afresh (a candidate moved into the stage again).
    again, created = invite(sample_test)
    assert created is True and again.generation == 1 and again.status == "invited"


def test_a_started_invitation_cannot_be_cancelled(app, sample_test):
    invitation, _ = invite(sample_test)
    services.start_invitation(invitation.token)
    assert services.cancel_invitation(invitation.id, "archived") is False
    db.session.refresh(invitation)
    assert invitation.status == "started"


def test_create_invitation_refuses_bad_input(app, sample_test):
    with pytest.raises(ValueError):
        invite(sample_test, email="not-an-address")
    with pytest.raises(LookupError):
        services.create_invitation(9999, name="x", email="x@example.com", source="s",
                                   source_ref=None, idempotency_key="k")


def test_complete_twice_stores_one_result_and_sends_one_signal(app, sample_test):
    invitation, _ = invite(sample_test)
    token = invitation.token
    services.start_invitation(token)
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    with invitation_completed.connected_to(receiver):
        first = services.complete_invitation(token, right_answers(sample_test))
        second = services.complete_invitation(token, {})
    assert first.id == second.id and first.score == 3 and first.passed
    assert received == [{"result_id": first.id, "invitation_id": invitation.id}]
    assert db.session.scalar(db.select(db.func.count(Result.id))) == 1


def test_receivers_write_in_the_results_transaction(app, sample_test):
    """What a receiver adds (a note for the ATS) commits with the result, or not at all."""
    from hub.models import AuditEvent, audit

    invitation, _ = invite(sample_test)
    token = invitation.token
    services.start_invitation(token)
    seen_by_other_session = []

    def receiver(sender, result_id, invitation_id):
        # Not committed yet: another connection does not see the result.
        with db.engine.connect() as conn:
            seen_by_other_session.append(conn.execute(
                db.text("SELECT count(*) FROM result WHERE id = :id"), {"id": result_id}).scalar())
        audit("test.receiver", target=result_id)

    with invitation_completed.connected_to(receiver):
        result = services.complete_invitation(token, {})
    assert seen_by_other_session == [0]
    db.session.expire_all()
    assert db.session.scalar(db.select(AuditEvent).filter_by(action="test.receiver")).target == result.id


def test_complete_requires_start_and_respects_the_time_limit(app, sample_test):
    invitation, _ = invite(sample_test)
    token = invitation.token
    with pytest.raises(services.InvitationNotStarted):
        services.complete_invitation(token, {})
    services.start_invitation(token)
    invitation = services.invitation_by_token(token)
    limit = timedelta(minutes=sample_test.time_limit_minutes)
    assert invitation.submit_by - invitation.started_at == limit + services.GRACE
    invitation.started_at -= limit + services.GRACE + timedelta(seconds=5)
    invitation.submit_by -= limit + services.GRACE + timedelta(seconds=5)
    db.session.commit()
    with pytest.raises(services.InvitationExpired) as caught:
        services.complete_invitation(token, right_answers(sample_test))
    assert caught.value.time_up
    assert db.session.scalar(db.select(db.func.count(Result.id))) == 0
    with pytest.raises(services.InvitationNotFound):
        services.complete_invitation("nope", {})


def test_expire_invitations_job(app, sample_test):
    late, _ = invite(sample_test, key="late")
    fresh, _ = invite(sample_test, key="fresh")
    overtime, _ = invite(sample_test, key="overtime")
    late.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    services.start_invitation(overtime.token)
    db.session.refresh(overtime)
    overtime.submit_by = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert services.expire_invitations() == {"expired": 2}
    db.session.expire_all()
    assert [db.session.get(Invitation, i.id).status for i in (late, fresh, overtime)] == \
        ["expired", "invited", "expired"]
    assert services.expire_invitations() == {"expired": 0}
    assert services.HUB_PERIODIC_JOBS[0].name == "hub.assessments.services.expire_invitations"


def test_report_url_is_absolute_and_revocable(app, sample_test):
    invitation, _ = invite(sample_test)
    services.start_invitation(invitation.token)
    result = services.complete_invitation(invitation.token, {})
    url = services.report_url(result.id)
    assert url.startswith("http://hub.test/r/") and services.report_url(result.id) == url
    assert services.result_by_report_token(url.rsplit("/", 1)[1]).id == result.id
    result.revoke_report_link()
    db.session.commit()
    with pytest.raises(services.ReportLinkRevoked):
        services.report_url(result.id)
    assert services.result_by_report_token(url.rsplit("/", 1)[1]) is None


def _in_threads(app, count, func):
    """Run ``func`` in ``count`` threads at once, each with its own app context and session."""
    barrier = threading.Barrier(count)
    results, errors = [], []

    def run():
        with app.app_context():
            try:
                barrier.wait(10)
                results.append(func())
            except Exception as exc:  # surfaced below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def test_concurrent_create_invitation_makes_one(pg_app, pg_org_id):
    test = make_test(pg_org_id)
    test_id = test.id

    def call():
        invitation, created = services.create_invitation(
            test_id, name="Grace", email="grace@example.com", source="tiny_example",
            source_ref="opp-9", idempotency_key="same-key")
        db.session.commit()  # as the job that called it would
        return invitation.id, created

    results = _in_threads(pg_app, 8, call)
    assert len({r[0] for r in results}) == 1
    assert sorted(r[1] for r in results) == [False] * 7 + [True]
    assert db.session.scalar(db.select(db.func.count(Invitation.id))) == 1
    assert db.session.scalar(db.select(db.func.count(OutboundEmail.id))) == 1


def test_concurrent_completion_stores_one_result(pg_app, pg_org_id):
    test = make_test(pg_org_id)
    invitation, _ = invite(test)
    token = invitation.token
    services.start_invitation(token)
    answers = right_answers(test)
    signals = []

    def receiver(sender, **kwargs):
        signals.append(kwargs["result_id"])

    with invitation_completed.connected_to(receiver):
        results = _in_threads(pg_app, 6, lambda: services.complete_invitation(token, answers).id)
    assert len(set(results)) == 1 and signals == [results[0]]
    assert db.session.scalar(db.select(db.func.count(Result.id))) == 1


def test_demo_sample_test_is_valid_and_seeded_once(app, admin):
    from hub.assessments.demo import SAMPLE_TITLE, seed_sample_test

    first = seed_sample_test(admin.organization_id)
    db.session.commit()
    assert seed_sample_test(admin.organization_id).id == first.id
    assert first.title == SAMPLE_TITLE and len(first.questions) == 5


def test_the_sample_test_marks_the_right_answers():
    """The demo's sample questions, checked against Python itself: a wrong mark fails here."""
    import keyword

    from hub.assessments.demo import SAMPLE_TEST

    def plain(text):  # `code` marks are presentation, not part of the answer
        return text.replace("`", "")

    questions = {plain(q["text"]): {**q, "options": [plain(o) for o in q["options"]]}
                 for q in SAMPLE_TEST["questions"]}

    def marked(text):
        q = questions[text]
        return {q["options"][i] for i in q["correct"]}

    def is_mutable(name):
        value = {"list": [1], "tuple": (1,), "dict": {1: 1}, "str": "a"}[name]
        try:
            value[0] = value[0] if not isinstance(value, dict) else None
            return True
        except TypeError:
            return False

    assert marked("What does len([1, 2, 3]) return?") == {str(len([1, 2, 3]))}
    mutable = questions["Which of these types are mutable?"]
    assert marked("Which of these types are mutable?") == {o for o in mutable["options"] if is_mutable(o)}
    starts = questions["Which keyword starts a function definition?"]["options"]
    assert marked("Which keyword starts a function definition?") == {
        o for o in starts if keyword.iskeyword(o) and compile(f"{o} f(): pass", "q", "exec")}
    assert marked("What is the value of bool([])?") == {str(bool([]))}
    handling = questions["Which of these are Python keywords for handling exceptions?"]["options"]
    assert marked("Which of these are Python keywords for handling exceptions?") == {
        o for o in handling if keyword.iskeyword(o)}
    assert len(questions) == len(SAMPLE_TEST["questions"])  # every question is checked above
    assert set(questions) == {"What does len([1, 2, 3]) return?", "Which of these types are mutable?",
                              "Which keyword starts a function definition?", "What is the value of bool([])?",
                              "Which of these are Python keywords for handling exceptions?"}


@pytest.mark.parametrize("email, valid", [
    ("ada@example.com", True), ("josé@example.com", True), ("ada+tag@sub.example.co.uk", True),
    ("a@münchen.de", True),
    # Issue #39, 8: what looks like an address on a page but is another one.
    ("zw\u200b@example.com", False), ("ada@exa\u200dmple.com", False), ("a@\u202eevil.example", False),
    ("\u2066ada@example.com", False), ("\uff41dmin@example.com", False), ("ada@ｅxample.com", False),
    ("\ufb01@example.com", False), ("ada@\u00a0example.com", False), ("ada@example.com\u2028", False),
    ("ada@b..example", False), ("ada@localhost", False), ("ada@" + "x" * 64 + ".com", False),
])
def test_an_address_is_refused_when_it_shows_as_another(email, valid):
    assert services.valid_email(email) is valid


def _resends(invitation_id: str) -> list[OutboundEmail]:
    db.session.expire_all()
    return db.session.scalars(db.select(OutboundEmail).where(
        OutboundEmail.idempotency_key.startswith(f"invitation:{invitation_id}:resend:"))).all()


def _age(emails, **delta) -> None:
    for email in emails:
        email.created_at -= timedelta(**delta)
    db.session.commit()


def test_resending_an_invitation_is_throttled_per_invitation_and_per_organization(app, sample_test):
    """Issue #39, 9: one member queued 25 emails to one candidate in seconds."""
    invitation, _ = invite(sample_test)
    refused = 0
    for _ in range(25):
        try:
            services.resend_invitation(invitation.id)
            db.session.commit()
        except services.ResendRefused as exc:
            db.session.rollback()
            refused += 1
            assert "one resend every 10 minutes at most" in str(exc)
    assert len(_resends(invitation.id)) == 1 and refused == 24
    # Ten minutes later: once more; five a day at most.
    for _ in range(4):
        _age(_resends(invitation.id), minutes=11)
        services.resend_invitation(invitation.id)
        db.session.commit()
    _age(_resends(invitation.id), minutes=11)
    with pytest.raises(services.ResendRefused, match="5 times in the last 24 hours"):
        services.resend_invitation(invitation.id)
    assert len(_resends(invitation.id)) == 5
    # The organization's hour: another invitation refused once the organization spent its budget.
    app.config["HUB_RESENDS_PER_ORGANIZATION_PER_HOUR"] = 5
    assert all(e.created_at > utcnow() - timedelta(hours=1) for e in _resends(invitation.id))
    other, _ = invite(sample_test, key="key-2", email="grace@example.com")
    with pytest.raises(services.ResendRefused, match="Your organization sent 5 invitations again"):
        services.resend_invitation(other.id)


def test_two_resends_at_once_queue_one_email(pg_app, pg_org_id):
    """Both pass the check before either commits: the resend's key names its interval, so the
    second insert finds the first's email (one email, not two)."""
    from tests.hub.assessments.conftest import make_test as make

    invitation, _ = invite(make(pg_org_id))
    results = []

    def resend():
        with pg_app.app_context():
            try:
                services.resend_invitation(invitation.id)
                db.session.commit()
                results.append("ok")
            except Exception as exc:  # reported in the assertion below
                results.append(repr(exc))
            finally:
                db.session.remove()

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=lambda: (barrier.wait(), resend())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(_resends(invitation.id)) == 1, results
