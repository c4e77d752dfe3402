"""What Greenhouse sends to WeCP's partner endpoints, checked before anything is stored.

Greenhouse may add properties but never removes or changes them, sends ``null`` for a property
without a value, and older revisions sent ids as numbers (docs/providers/greenhouse.md#assessment-api):
unknown fields are ignored, ``null`` reads as missing, ids are read as strings.
"""
from __future__ import annotations

import re

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

#: Ids WeCP answers as ``partner_test_id`` (a test's number) and ``partner_interview_id`` (a
#: UUID): docs/providers/greenhouse.md#ids.
TEST_ID = re.compile(r"[1-9][0-9]{0,17}")
INTERVIEW_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class IdText(fields.String):
    """A string, or a number sent as one (older Greenhouse examples)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


def _text(length: int, **kwargs):
    return fields.String(load_default=None, allow_none=True, validate=validate.Length(max=length), **kwargs)


class CandidateSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    first_name = _text(200)
    last_name = _text(200)
    preferred_name = _text(200)
    # The test is sent to this address (docs/providers/greenhouse.md#send-test).
    email = fields.Email(required=True, validate=validate.Length(max=320))
    greenhouse_profile_url = _text(2000)


class SendTestSchema(Schema):
    """``send_test``'s body (docs/providers/greenhouse.md#send-test). ``resume_url`` and
    ``phone_number`` are not read: WeCP needs neither to send a test."""

    class Meta:
        unknown = EXCLUDE

    partner_test_id = IdText(required=True, validate=validate.Regexp(
        TEST_ID.pattern + r"\Z", error="is not a test of list_tests"))
    candidate = fields.Nested(CandidateSchema, required=True)
    sent_by = _text(320)
    url = _text(2000)


class ResponseErrorSchema(Schema):
    """``response_error``'s body (docs/providers/greenhouse.md#response-error): only ``api_call``
    and ``errors`` are required by Greenhouse, and even those are read leniently, so that a report
    is never lost to a missing field."""

    class Meta:
        unknown = EXCLUDE

    api_call = _text(100)
    errors = fields.List(fields.String(validate=validate.Length(max=1000)), load_default=list,
                         allow_none=True, validate=validate.Length(max=50))
    partner_test_id = IdText(load_default=None, allow_none=True, validate=validate.Length(max=64))
    partner_test_name = _text(300)
    partner_interview_id = IdText(load_default=None, allow_none=True, validate=validate.Length(max=64))
    candidate_email = _text(320)


def in_words(error: ValidationError) -> str:
    """A schema's complaints as one line: ``candidate.email: Not a valid email address.``"""
    def flatten(messages, prefix=""):
        if isinstance(messages, dict):
            for name, inner in sorted(messages.items(), key=lambda item: str(item[0])):
                yield from flatten(inner, f"{prefix}{name}.")
        elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
            yield f"{prefix.rstrip('.')}: {' '.join(messages)}"
        else:
            for inner in messages if isinstance(messages, list) else [messages]:
                yield from flatten(inner, prefix)
    return "; ".join(flatten(error.messages))
