"""Marshmallow schemas for tests: one set of rules for the JSON API and the test form."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..openapi import UtcDateTime
from .models import KINDS


class QuestionSchema(Schema):
    id = fields.Integer(dump_only=True)
    text = fields.String(required=True, validate=validate.Length(
        min=1, max=5000, error="Enter the question (at most {max} characters)."))
    kind = fields.String(load_default="single", validate=validate.OneOf(KINDS))
    options = fields.List(fields.String(validate=validate.Length(min=1, max=1000)), required=True,
                          validate=validate.Length(min=2, max=10,
                                                   error="Give between {min} and {max} options."))
    correct = fields.List(fields.Integer(strict=True), required=True,
                          validate=validate.Length(min=1, error="Mark at least one correct option."))

    @validates_schema
    def check_correct(self, data, **kwargs):
        options, correct = data.get("options", []), data.get("correct", [])
        if any(i < 0 or i >= len(options) for i in correct):
            raise ValidationError("Each correct option must be one of the options (0-based index).",
                                  "correct")
        if len(set(correct)) != len(correct):
            raise ValidationError("A correct option is listed twice.", "correct")
        if data.get("kind", "single") == "single" and len(correct) != 1:
            raise ValidationError("A one-answer question needs exactly one correct option.", "correct")
        texts = [o.strip().lower() for o in options]
        if len(set(texts)) != len(texts):
            raise ValidationError("Two options have the same text.", "options")


class AssessmentTestSchema(Schema):
    id = fields.Integer(dump_only=True)
    title = fields.String(required=True, validate=[
        validate.Length(min=1, max=200, error="Enter a title of at most {max} characters."),
        # The title is the invitation email's subject: a line break there would be a new header.
        validate.Regexp(r"[^\x00-\x1f\x7f]*\Z", error="Enter a title on one line.")])
    description = fields.String(load_default="", validate=validate.Length(max=5000))
    pass_mark = fields.Integer(strict=True, load_default=60, validate=validate.Range(0, 100))
    time_limit_minutes = fields.Integer(strict=True, load_default=30, validate=validate.Range(1, 600))
    valid_days = fields.Integer(strict=True, load_default=7, validate=validate.Range(1, 365))
    questions = fields.List(fields.Nested(QuestionSchema), required=True,
                            validate=validate.Length(min=1, max=200, error="Add at least one question."))
    created_at = UtcDateTime(dump_only=True)
    updated_at = UtcDateTime(dump_only=True)


class AssessmentTestSummarySchema(Schema):
    id = fields.Integer()
    title = fields.String()
    pass_mark = fields.Integer()
    time_limit_minutes = fields.Integer()
    valid_days = fields.Integer()
    question_count = fields.Function(lambda t: len(t.questions))
    updated_at = UtcDateTime()
