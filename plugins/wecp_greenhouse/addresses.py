"""Addresses from Greenhouse: the completion ``url`` WeCP calls, and the candidate's profile link.

Both arrive in a ``send_test`` body. WeCP sends a request to the first and shows the second as a
link, so each is accepted only on a Greenhouse host (``GREENHOUSE_APP_HOSTS``): a key holder cannot
make WeCP call anywhere else, nor put a ``javascript:`` link in front of a recruiter.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from flask import current_app

# docs/providers/greenhouse.md#ids: the candidate in the path, the application in the query.
_PEOPLE = re.compile(r"/people/([1-9][0-9]{0,18})(?:/|$)")
_GREENHOUSE_ID = re.compile(r"[1-9][0-9]{0,18}")
MAX_ID = 2**63 - 1


def on_greenhouse(url: str | None) -> bool:
    """Is ``url`` an address on one of Greenhouse's hosts, over https (http only for a local
    stand-in), with no user name or password in it?"""
    if not url:
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    schemes = ("https", "http") if current_app.config["GREENHOUSE_ENV"] == "local" else ("https",)
    if parts.scheme not in schemes or not parts.hostname or parts.username or parts.password:
        return False
    host = parts.hostname.lower() + (f":{port}" if port else "")
    return host in current_app.config["GREENHOUSE_APP_HOSTS"]


def profile_ids(url: str | None) -> tuple[int | None, int | None]:
    """(candidate id, application id) read from a ``greenhouse_profile_url``, each None when
    absent: parsing it is best effort and never fails a send (docs/providers/greenhouse.md#send-test)."""
    if not url:
        return None, None
    parts = urlsplit(url)
    found = _PEOPLE.search(parts.path)
    candidate = int(found.group(1)) if found else None
    values = parse_qs(parts.query).get("application_id") or [""]
    application = int(values[0]) if _GREENHOUSE_ID.fullmatch(values[0]) else None
    return (candidate if candidate and candidate <= MAX_ID else None,
            application if application and application <= MAX_ID else None)
