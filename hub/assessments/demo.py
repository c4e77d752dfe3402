"""The sample test the demo seeds, so a fresh demo has something to link to a job posting."""
from __future__ import annotations

from ..extensions import db
from .models import AssessmentTest
from .schemas import AssessmentTestSchema
from .services import save_test

SAMPLE_TITLE = "Sample: Python basics"

SAMPLE_TEST = {
    "title": SAMPLE_TITLE,
    "description": "Five short questions on everyday Python. Take your time to read each one.",
    "pass_mark": 60,
    "time_limit_minutes": 15,
    "valid_days": 7,
    "questions": [
        {"text": "What does `len([1, 2, 3])` return?", "kind": "single",
         "options": ["2", "3", "4"], "correct": [1]},
        {"text": "Which of these types are mutable?", "kind": "multiple",
         "options": ["`list`", "`tuple`", "`dict`", "`str`"], "correct": [0, 2]},
        {"text": "Which keyword starts a function definition?", "kind": "single",
         "options": ["`func`", "`def`", "`function`", "`fn`"], "correct": [1]},
        {"text": "What is the value of `bool([])`?", "kind": "single",
         "options": ["True", "False"], "correct": [1]},
        {"text": "Which of these are Python keywords for handling exceptions?", "kind": "multiple",
         "options": ["`try`", "`except`", "`catch`", "`rescue`"], "correct": [0, 1]},
    ],
}


def seed_sample_test(organization_id: int) -> AssessmentTest:
    """Create the sample test once per organization (the caller commits)."""
    existing = db.session.scalar(db.select(AssessmentTest).filter_by(
        organization_id=organization_id, title=SAMPLE_TITLE))
    if existing is not None:
        return existing
    test = save_test(organization_id, AssessmentTestSchema().load(SAMPLE_TEST))
    db.session.flush()
    return test
