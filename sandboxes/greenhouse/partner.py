"""Greenhouse's side of the Assessment Partner API: the calls it makes to the partner (WeCP) with
the customer's key, the checks it applies to each answer, and the ``response_error`` it sends when
an answer is unusable (docs/providers/greenhouse.md#assessment-api, #response-error).
"""
from __future__ import annotations

import base64

import requests

from .state import World


class PartnerProblem(Exception):
    """The partner's answer could not be used (already reported through ``response_error``)."""


def _headers(world: World) -> dict:
    # docs/providers/greenhouse.md#assessment-auth: the key as user name, an empty password.
    token = base64.b64encode(f"{world.partner['key']}:".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _call(world: World, call: str, method: str, *, json=None, params=None, timeout: float = 10.0):
    url = world.partner.get(call) or ""
    if not url or not world.partner["key"]:
        raise PartnerProblem("the assessment partner is not set up (Support enters its key and addresses)")
    try:
        response = requests.request(method, url, json=json, params=params, headers=_headers(world), timeout=timeout)
    except requests.RequestException as exc:
        world.record(direction="to partner", call=call, status=None, error=type(exc).__name__)
        raise PartnerProblem(f"{call}: the partner could not be reached ({type(exc).__name__})") from None
    world.record(direction="to partner", call=call, status=response.status_code)
    return response


def report(world: World, api_call: str, errors: list[str], **about) -> None:
    """``POST response_error`` (best effort, as Greenhouse's own is)."""
    body = {"api_call": api_call, "errors": errors, **{k: v for k, v in about.items() if v is not None}}
    with world.lock:
        world.errors_reported.append(body)
    try:
        _call(world, "response_error", "POST", json=body)
    except PartnerProblem:
        pass


def _json(world: World, call: str, response, about: dict):
    if response.status_code != 200:
        problem = f"{call} answered HTTP {response.status_code}"
        if response.status_code not in (401, 404):  # the documented refusals are not malformed
            report(world, call, [problem], **about)
        raise PartnerProblem(problem)
    try:
        return response.json()
    except ValueError:
        report(world, call, [f"{call} did not answer JSON"], **about)
        raise PartnerProblem(f"{call} did not answer JSON") from None


def list_tests(world: World) -> list[dict]:
    """The tests the partner offers this customer (docs/providers/greenhouse.md#list-tests)."""
    tests = _json(world, "list_tests", _call(world, "list_tests", "GET"), {})
    if not isinstance(tests, list) or not all(
            isinstance(t, dict) and isinstance(t.get("partner_test_id"), str)
            and isinstance(t.get("partner_test_name"), str) for t in tests):
        report(world, "list_tests", ["the answer is not an array of {partner_test_id, partner_test_name} strings"])
        raise PartnerProblem("list_tests answered something other than an array of tests")
    return tests


def send_test(world: World, body: dict, about: dict) -> str:
    """Ask the partner to send a test; its ``partner_interview_id`` (docs/providers/greenhouse.md#send-test)."""
    answer = _json(world, "send_test", _call(world, "send_test", "POST", json=body), about)
    ident = answer.get("partner_interview_id") if isinstance(answer, dict) else None
    if not isinstance(ident, str | int) or isinstance(ident, bool) or not str(ident):
        report(world, "send_test", ["partner_interview_id is missing"], **about)
        raise PartnerProblem("send_test answered no partner_interview_id")
    return str(ident)


def test_status(world: World, interview_id: str, about: dict) -> dict:
    """Where the test stands (docs/providers/greenhouse.md#test-status), checked as Greenhouse does."""
    answer = _json(world, "test_status",
                   _call(world, "test_status", "GET", params={"partner_interview_id": interview_id}), about)
    errors = []
    if not isinstance(answer, dict) or not isinstance(answer.get("partner_status"), str):
        errors.append("partner_status is missing")
    else:
        if answer["partner_status"] == "complete" and not answer.get("partner_profile_url"):
            errors.append("partner_status is 'complete' but partner_profile url is missing")
        score = answer.get("partner_score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
            errors.append("partner_score is not a number")
        metadata = answer.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or any(
                isinstance(v, dict | list) for v in metadata.values())):
            errors.append("metadata is not a flat object of simple values")
    if errors:
        report(world, "test_status", errors, partner_interview_id=interview_id, **about)
        raise PartnerProblem("; ".join(errors))
    return answer
