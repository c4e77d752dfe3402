"""WeCP's own assessment domain, shared by every integration: tests, invitations, results.

Integrations use ``services`` (create_invitation, complete_invitation, report_url, ...), connect
to ``signals.invitation_completed``, and may add a panel to the test page by appending a template
name to ``app.extensions["hub.test_page_panels"]`` (rendered with ``test`` in the context).
"""
from __future__ import annotations

import re

from markupsafe import Markup, escape


def init_app(app) -> None:
    from . import api, candidate, views

    #: Templates included on each test page, in order; each is rendered with ``test``.
    app.extensions.setdefault("hub.test_page_panels", [])
    app.extensions["hub.nav"].append(("assessments.tests", "Tests"))
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(candidate.bp)
    app.jinja_env.filters.setdefault("hub_datetime", format_datetime)
    app.jinja_env.filters.setdefault("hub_code", inline_code)


#: `code` in a question or an option: shown as code (monospace, kept as typed).
_INLINE_CODE = re.compile(r"`([^`\n]+)`")


def inline_code(text) -> Markup:
    """Text of a question or an option, escaped, with each `backticked` part as <code>."""
    escaped = str(escape(text or ""))  # escaping leaves backticks alone
    return Markup(_INLINE_CODE.sub(lambda m: f"<code>{m.group(1)}</code>", escaped))


def format_datetime(value) -> str:
    """Stored times are naive UTC; say so on every page and email."""
    return "" if value is None else value.strftime("%d %b %Y, %H:%M UTC")
