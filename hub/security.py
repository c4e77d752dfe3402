"""Response headers, host checks and log redaction applied to every request of the hub."""
from __future__ import annotations

import functools
import logging
import re

from flask import request

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self' {form_targets}; frame-ancestors 'none'")


def is_webhook_intake(req) -> bool:
    """A provider's delivery, ``POST /webhooks/<plugin>/<endpoint id>``: signed, never signed in.

    Intake is the hub's hottest path (docs/performance.md, B1) and has no use for a session or a
    user, so the work for those is skipped there. Other ``/webhooks/`` routes are longer.
    """
    return req.method == "POST" and req.path.startswith("/webhooks/") and req.path.count("/") == 3


def is_partner_call(req) -> bool:
    """A provider calling a partner endpoint, ``/partners/<plugin>/…``: authenticated by its key."""
    return req.path.startswith("/partners/")


def is_sessionless(req) -> bool:
    """Callers that never carry nor get a session or a user: webhook intake and partner calls."""
    return is_webhook_intake(req) or is_partner_call(req)


def error_headers(exc) -> list[tuple[str, str]]:
    """Of an HTTP error's own headers, only Retry-After (429, 503): it tells when to try again."""
    return [(k, v) for k, v in exc.get_headers() if k == "Retry-After"]


@functools.lru_cache(maxsize=16)
def _csp(targets: tuple[str, ...]) -> str:
    return CSP.format(form_targets=" ".join(targets)).replace("  ", " ")


def init_app(app) -> None:
    proxies = app.config.get("HUB_TRUSTED_PROXIES", 0)
    if proxies:
        # The client's address (sign-in throttling, logs) and the scheme and host come from
        # X-Forwarded-* only as set by the operator's own proxies, never from the caller.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)

    @app.after_request
    def headers(response):
        # Forms post to the provider's consent page (OAuth authorize is a redirect, not a post),
        # so 'self' is enough for form-action; the extra targets are for plugins that need one.
        targets = tuple(app.config.get("HUB_CSP_FORM_TARGETS", ()))
        response.headers.setdefault("Content-Security-Policy", _csp(targets))
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if app.config.get("PRODUCTION"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.path.startswith(("/api/", "/webhooks/", "/partners/")) or response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response


# What a secret looks like when it slips into a log line: bearer tokens, OAuth fields, ours.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:access_token|refresh_token|client_secret|signatureToken|signature_token|"
               r"password|code|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"),
    re.compile(r"hub_[A-Za-z0-9_-]{20,}"),
    # Partner keys WeCP issues, wherever they appear.
    re.compile(r"wcp_pk_[A-Za-z0-9_-]{20,}"),
    # An access log's user field is HTTP Basic's user name: a partner key (ours or a stranger's).
    re.compile(r"^([^\s\[]+ - )(?!- \[)[^\s\[]+(?= \[)"),
    # Candidate links /t/<token> and report links /r/<token>: access logs print every path.
    re.compile(r"(/[tr]/)[A-Za-z0-9_-]{20,}"),
]


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Replace the record's message, traceback and stack with their redacted text."""
    try:
        message = record.getMessage()
    except Exception:  # bad arguments: logging reports it at emit time, as it always does
        return record
    cleaned = redact(message)
    if cleaned != message or record.args:
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """Rewrites every record so tokens never reach a log handler, whoever logged them."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_log_redaction() -> None:
    """Redact every log record of this process when it is created.

    A filter on a handler only sees records of that handler, and a filter on the root logger
    never sees records propagated from other loggers. Handlers are added after the app starts
    (gunicorn's access and error logs, the RQ worker's own handler, pytest's capture), and some
    loggers do not propagate. The record factory is the one place every record passes through,
    whichever logger or handler it is meant for.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "hub_redacting", False):
        return

    def factory(*args, **kwargs):
        return redact_record(current(*args, **kwargs))

    factory.hub_redacting = True
    logging.setLogRecordFactory(factory)
