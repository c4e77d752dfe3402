"""The OpenAPI 3 document of ``/api/v1``, built from each view's declaration and its marshmallow
schemas (apispec), served at ``/api/v1/openapi.json``.

A view of the API (the hub's or a plugin's, made with ``hub.api.api_blueprint``) says what it
takes and answers with ``@operation``; the document is built from the app's own URL map, so a
plugin's routes appear when it is loaded and a route without a declaration is found by
``undocumented`` (a test fails on it). Every answer is JSON: ``{"data": …}`` on success (but
``/me`` and this document, older than the rule), ``{"error": …}`` (and ``fields`` for invalid
input) otherwise.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import current_app
from marshmallow import Schema, fields

PREFIX = "/api/v1/"

#: Why each error status is answered, in the words of the document.
ERRORS = {
    400: "The request cannot be done as asked: `error` says why.",
    401: "Not signed in: send `Authorization: Bearer <token>` (an API token) or the session cookie.",
    403: "Signed in without the role this needs, or a cookie call without its CSRF token.",
    404: "No such object in your organization.",
    409: "The integration's connection cannot be used: reconnect it in Settings › Integrations.",
    413: "The body is too large.",
    415: "The body is not JSON.",
    422: "Invalid input: `fields` says what to change.",
    429: "Too many calls: wait as `Retry-After` says.",
    502: "The ATS could not be reached: try again in a moment.",
}


class UtcDateTime(fields.DateTime):
    """A date-time of the API: the database's naive UTC values written with their offset, as
    RFC 3339 and the document's ``date-time`` say (a bare "2026-12-08T02:21:27" is no instant)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return super()._serialize(value, attr, obj, **kwargs)


class ErrorSchema(Schema):
    error = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", keys=fields.String())


def operation(summary: str, *, data: Schema | type[Schema] | dict | None = None, many: bool = False,
              body: Schema | type[Schema] | None = None, status: int = 200, errors: tuple[int, ...] = (),
              query: dict[str, str] | None = None, wrapped: bool = True) -> Callable:
    """Declare a view's operation: its answer's ``data`` (a schema, ``many`` for a list), the
    JSON ``body`` it takes, its success ``status`` (204: no body) and the errors it may answer
    besides those of every call (401, 429) and of its path (404) and body (422). ``wrapped``:
    the answer is ``{"data": …}`` (False: the schema is the whole answer)."""
    def mark(view):
        view.openapi = {"summary": summary, "data": data, "many": many, "body": body, "status": status,
                        "errors": errors, "query": query or {}, "wrapped": wrapped}
        return view
    return mark


def _envelope(data, many: bool) -> dict:
    item = data if data is not None else {"type": "object"}
    return {"type": "object", "required": ["data"],
            "properties": {"data": {"type": "array", "items": item} if many else item}}


def _json(schema) -> dict:
    return {"application/json": {"schema": schema}}


def _path(rule) -> tuple[str, list[dict]]:
    """Flask's ``/tests/<int:test_id>`` as OpenAPI's ``/tests/{test_id}`` and its parameters."""
    parameters = []
    for converter, _, name in re.findall(r"<(?:(\w+)(\([^)]*\))?:)?(\w+)>", rule.rule):
        kind = {"int": {"type": "integer", "minimum": 0}}.get(converter, {"type": "string"})
        parameters.append({"name": name, "in": "path", "required": True, "schema": kind})
    return re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", rule.rule), parameters


def _operation(declared: dict, path_parameters: list[dict]) -> dict:
    status = declared["status"]
    success = {"description": declared["summary"]}
    if status != 204:
        answer = declared["data"] if declared["data"] is not None else {"type": "object"}
        success["content"] = _json(_envelope(declared["data"], declared["many"]) if declared["wrapped"] else answer)
    codes = {401, 429, *declared["errors"]}
    if path_parameters:
        codes.add(404)
    op = {"summary": declared["summary"], "security": [{"bearer": []}, {"cookie": []}],
          "parameters": path_parameters + [
              {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
              for name, text in declared["query"].items()],
          "responses": {str(status): success}}
    if declared["body"] is not None:
        op["requestBody"] = {"required": True, "content": _json(declared["body"])}
        codes |= {413, 415, 422}
    for code in sorted(codes):
        op["responses"][str(code)] = {"description": ERRORS[code], "content": _json(ErrorSchema)}
    return op


def api_rules(app):
    return [rule for rule in app.url_map.iter_rules() if rule.rule.startswith(PREFIX)]


def undocumented(app) -> list[str]:
    """The ``/api/v1`` routes whose view declares no operation."""
    return sorted(f"{rule.endpoint} {rule.rule}" for rule in api_rules(app)
                  if not hasattr(app.view_functions[rule.endpoint], "openapi"))


def build(app) -> dict:
    spec = APISpec(title=f"{app.config.get('HUB_COMPANY_NAME', 'WeCP')} Integration Hub API", version="1",
                   openapi_version="3.0.3", plugins=[MarshmallowPlugin()],
                   info={"description": "Tests, integrations and their links, for WeCP's front end and scripts."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": "An API token (`hub api-tokens create`)."})
    spec.components.security_scheme("cookie", {"type": "apiKey", "in": "cookie", "name": "session",
                                               "description": "The signed-in session; changes need X-CSRFToken."})
    paths: dict[str, dict] = {}
    for rule in sorted(api_rules(app), key=lambda r: r.rule):
        declared = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if declared is None:
            continue
        path, parameters = _path(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(declared, parameters)
    for path, operations in paths.items():
        spec.path(path=path.removeprefix("/api/v1"), operations=operations)
    document = spec.to_dict()
    document["servers"] = [{"url": "/api/v1"}]
    return document


def document() -> dict:
    """This app's document, built once per process (the routes do not change once loaded)."""
    app = current_app._get_current_object()
    built = app.extensions.get("hub.openapi")
    if built is None:
        built = app.extensions["hub.openapi"] = build(app)
    return built
