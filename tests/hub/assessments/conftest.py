"""Helpers for the assessment tests: a sample test and invitations to it."""
from __future__ import annotations

import pytest

from hub.assessments import services
from hub.assessments.models import AssessmentTest
from hub.extensions import db

SAMPLE = {
    "title": "Python basics",
    "description": "Three short questions.",
    "pass_mark": 60,
    "time_limit_minutes": 20,
    "valid_days": 5,
    "questions": [
        {"text": "What is 2 + 2?", "kind": "single", "options": ["3", "4", "5"], "correct": [1]},
        {"text": "Which are mutable?", "kind": "multiple",
         "options": ["list", "tuple", "dict"], "correct": [0, 2]},
        {"text": "Is None falsy?", "kind": "single", "options": ["yes", "no"], "correct": [0]},
    ],
}


def make_test(organization_id: int, **changes) -> AssessmentTest:
    data = {**SAMPLE, **changes}
    test = services.save_test(organization_id, data)
    db.session.commit()
    return test


def invite(test, key="key-1", name="Ada Lovelace", email="ada@example.com"):
    """Invite in a transaction of its own, as a job does (create_invitation does not commit)."""
    result = services.create_invitation(test.id, name=name, email=email, source="tiny_example",
                                        source_ref="opp-1", idempotency_key=key)
    db.session.commit()
    return result


def right_answers(test) -> dict:
    return {str(q.id): list(q.correct) for q in test.questions}


@pytest.fixture
def sample_test(admin):
    return make_test(admin.organization_id)


@pytest.fixture
def pg_org_id(pg_app):
    """An organization on the PostgreSQL-only app (``admin`` belongs to the two-database ``app``)."""
    from hub.auth import create_user

    user = create_user("Acme", "owner@acme.example", "correct horse battery", "admin")
    db.session.commit()
    return user.organization_id
