"""A thin client for Greenhouse's Harvest v3 (docs/providers/greenhouse.md#harvest): WeCP calls
Greenhouse, optionally, to write a note and to move candidates who pass.

Every call carries the customer's OAuth token (``hub.connections.access_token``: refreshed by the
hub, replaced once on a 401); every answer's rate-limit headers set one pause per connection in
Redis, shared by every worker, and a call inside a pause is never made: the job is given back
(``Defer``) for when Greenhouse allows it. Errors are types: ``HarvestUnavailable`` (retry),
``HarvestRefused`` (a 4xx: fail the work with Greenhouse's reason), ``HarvestNotFound`` (404: the
object, or a route WeCP expects, is not there).
"""
from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
from flask import current_app

from hub.connections import access_token, mark_revoked
from hub.extensions import get_redis
from hub.http import session
from hub.jobs import Defer
from hub.outbox import Refused
from hub.plugin import ConnectionUnusable

from .addresses import MAX_ID

log = logging.getLogger("wecp_greenhouse.harvest")

#: Seconds to pause when a 429 says nothing of when to come back, and the most a header may ask.
DEFAULT_PAUSE, LONGEST_PAUSE = 10.0, 3600.0
#: Pages read at most from one list (a runaway cursor must not hold a worker).
MAX_PAGES = 50


class InvalidId(ValueError):
    """An id from outside that is not a Greenhouse id (a positive integer)."""


def harvest_id(value, what: str = "id") -> int:
    """``value`` as a Greenhouse id (docs/providers/greenhouse.md#ids), else ``InvalidId``."""
    if isinstance(value, bool):
        raise InvalidId(f"{what} is not a Greenhouse id")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise InvalidId(f"{what} is not a Greenhouse id")
    return value


class HarvestError(Exception):
    """Greenhouse answered with an error (``status`` None: it could not be reached). The text
    names the call and the status only; Greenhouse's own words are ``detail`` (admin pages)."""

    def __init__(self, status: int | None, detail: str = "", *, method: str = "", path: str = ""):
        self.status, self.detail, self.method, self.path = status, detail, method, path
        super().__init__(f"Greenhouse {method} {path} answered {status or 'nothing'}")

    def for_admin(self) -> str:
        return f"{self}: {self.detail}" if self.detail else str(self)


class HarvestUnavailable(HarvestError):
    """A timeout, a 5xx or a 408: tried again later."""


class HarvestRefused(HarvestError, Refused):
    """A 4xx other than 401 and 429: asking again will not help."""


class HarvestNotFound(HarvestRefused):
    """404, 405 or 410: the object is gone, or the route is not where WeCP expects it."""


def _pause_key(connection_id: str) -> str:
    return f"wecp_greenhouse:harvest:{connection_id}:paused_until"


def paused_for(connection_id: str) -> float:
    """Seconds left of the pause Greenhouse asked of this connection (0: none)."""
    until = get_redis().get(_pause_key(connection_id))
    return max(0.0, float(until) - time.time()) if until else 0.0


def _pause(connection_id: str, seconds: float) -> None:
    seconds = min(max(seconds, 1.0), LONGEST_PAUSE)
    get_redis().set(_pause_key(connection_id), repr(time.time() + seconds), ex=int(seconds) + 1)


def _seconds(value: str | None) -> float | None:
    """A header's wait in seconds: a number of seconds, an epoch time (docs/providers/greenhouse.md
    #harvest-rate-limits: ``X-RateLimit-Reset`` is "a timestamp") or an HTTP date."""
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        try:
            return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    if not math.isfinite(number):
        return None
    return number - time.time() if number > 10**9 else number


def _note_budget(connection_id: str, response) -> None:
    """docs/providers/greenhouse.md#harvest-rate-limits: never hard-code the window; when the
    budget is spent (``X-RateLimit-Remaining: 0``), pause until ``X-RateLimit-Reset``."""
    if response.headers.get("X-RateLimit-Remaining", "").strip() == "0":
        wait = _seconds(response.headers.get("X-RateLimit-Reset"))
        _pause(connection_id, wait if wait is not None and wait > 0 else DEFAULT_PAUSE)


def _retry_after(response) -> float:
    # docs/providers/greenhouse.md#harvest-rate-limits: Retry-After in seconds, else the reset time.
    wait = _seconds(response.headers.get("Retry-After"))
    if wait is None:
        wait = _seconds(response.headers.get("X-RateLimit-Reset"))
    return min(max(wait if wait is not None else DEFAULT_PAUSE, 1.0), LONGEST_PAUSE)


def _detail(response) -> str:
    """docs/providers/greenhouse.md#harvest-errors: v3 bodies are not documented; read ``message``
    and ``errors[].message`` when present, in at most 300 characters."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    words = [str(body.get("message") or body.get("error") or "")]
    for error in body.get("errors") or ():
        if isinstance(error, dict) and error.get("message"):
            field = f"{error['field']}: " if error.get("field") else ""
            words.append(f"{field}{error['message']}")
    return "; ".join(w for w in words if w)[:300]


def base_url() -> str:
    return current_app.config["GREENHOUSE_HARVEST_API_BASE_URL"].rstrip("/")


def _url(path_or_url: str) -> str:
    """A path of ours under the API base, or a ``next`` link Greenhouse gave, only if it is on
    the API's own host (a link elsewhere would carry the token there)."""
    if path_or_url.startswith("/"):
        return base_url() + path_or_url
    base, given = urlsplit(base_url()), urlsplit(path_or_url)
    if (given.scheme, given.netloc) != (base.scheme, base.netloc):
        raise HarvestRefused(None, "a next-page link pointed away from Greenhouse's API", method="GET",
                             path="(next page)")
    return path_or_url


def call(connection_id: str, method: str, path: str, *, params: dict | None = None,
         json: dict | None = None, timeout: float | None = None) -> requests.Response:
    """One Harvest call for this connection; raises as the module docstring says."""
    wait = paused_for(connection_id)
    if wait > 0:
        raise Defer(wait, "Greenhouse's rate limit")
    url = _url(path)
    shown = urlsplit(url).path
    token = access_token(connection_id)
    timeout = timeout or float(current_app.config["GREENHOUSE_TIMEOUT"])
    for attempt in (1, 2):
        try:
            response = session().request(method, url, params=params, json=json, timeout=timeout,
                                         allow_redirects=False,
                                         headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        except requests.RequestException as exc:
            raise HarvestUnavailable(None, type(exc).__name__, method=method, path=shown) from None
        _note_budget(connection_id, response)
        if response.status_code != 401 or attempt == 2:
            break
        # The token may have been revoked or replaced elsewhere: the hub refreshes it once
        # across all processes, then the call is made once more.
        token = access_token(connection_id, rejected=token)
    status = response.status_code
    if 200 <= status < 300:
        return response
    if status == 401:
        # docs/providers/greenhouse.md#harvest-errors: 401 with a fresh token means revoked.
        reason = ("Greenhouse refused WeCP's Harvest authorization (revoked, or the user who granted it "
                  "was deactivated): reconnect Harvest")
        mark_revoked(connection_id, reason)
        raise ConnectionUnusable(connection_id, reason)
    if status == 429:
        seconds = _retry_after(response)
        _pause(connection_id, seconds)
        raise Defer(seconds, "Greenhouse answered 429")
    if status >= 500 or status == 408:
        raise HarvestUnavailable(status, method=method, path=shown)
    if status in (404, 405, 410):
        raise HarvestNotFound(status, _detail(response), method=method, path=shown)
    raise HarvestRefused(status, _detail(response), method=method, path=shown)


def _items(body) -> list:
    """A list endpoint's items: v3's body shape is [?] (docs/providers/greenhouse.md#harvest-pagination),
    so a top-level array or an object holding one under ``data`` or ``results``."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for name in ("data", "results"):
            if isinstance(body.get(name), list):
                return body[name]
    return []


def pages(connection_id: str, path: str, params: dict | None = None) -> Iterator[dict]:
    """Every item of a list, following ``Link: rel="next"`` exactly as given (the cursor must be
    its only query parameter: docs/providers/greenhouse.md#harvest-pagination)."""
    url, query = path, params
    for _ in range(MAX_PAGES):
        response = call(connection_id, "GET", url, params=query)
        try:
            body = response.json()
        except ValueError:
            raise HarvestUnavailable(response.status_code, "not JSON", method="GET", path=urlsplit(url).path) from None
        yield from (item for item in _items(body) if isinstance(item, dict))
        url, query = response.links.get("next", {}).get("url"), None
        if not url:
            return
    log.warning("wecp_greenhouse.harvest.too_many_pages connection=%s path=%s", connection_id, path)


# --- the calls WeCP makes -----------------------------------------------------------------------

def check(connection_id: str) -> None:
    """One cheap authenticated read: the connection works (used before it is called Active)."""
    call(connection_id, "GET", "/v3/jobs", params={"per_page": 1})


def application(connection_id: str, application_id: int, *, timeout: float | None = None) -> dict:
    """One application: its status, current stage and job (docs/providers/greenhouse.md#harvest-move)."""
    body = call(connection_id, "GET", f"/v3/applications/{harvest_id(application_id, 'application id')}",
                timeout=timeout).json()
    return body if isinstance(body, dict) else {}


def open_jobs(connection_id: str) -> list[dict]:
    """The open jobs: ``id`` and ``name`` (docs/providers/greenhouse.md#harvest-jobs)."""
    return [job for job in pages(connection_id, "/v3/jobs", {"status": "open", "per_page": 500})
            if _is_id(job.get("id"))]


def job_stages(connection_id: str) -> dict[int, list[dict]]:
    """Every job's active stages in their order (docs/providers/greenhouse.md#harvest-jobs: the v3
    route is [?]; stage ids belong to one job)."""
    stages: dict[int, list[dict]] = {}
    for stage in pages(connection_id, "/v3/job_stages", {"per_page": 500}):
        if _is_id(stage.get("id")) and _is_id(stage.get("job_id")) and stage.get("active", True) is not False:
            stages.setdefault(stage["job_id"], []).append(stage)
    for listed in stages.values():
        listed.sort(key=lambda s: (s.get("priority") if isinstance(s.get("priority"), int) else 0, s["id"]))
    return stages


def move(connection_id: str, application_id: int, from_stage_id: int, to_stage_id: int) -> None:
    """docs/providers/greenhouse.md#harvest-move: from the stage just read, to the one picked."""
    call(connection_id, "POST", f"/v3/applications/{harvest_id(application_id, 'application id')}/move",
         json={"from_stage_id": harvest_id(from_stage_id), "to_stage_id": harvest_id(to_stage_id)})


def add_note(connection_id: str, candidate_id: int, body: str) -> None:
    """docs/providers/greenhouse.md#harvest-notes: the v3 write route is [?]; this is v1's note
    moved to v3's resource (``/v3/notes``). A 404 or 405 says the route is not there: the work
    fails with that reason and nothing else depends on it."""
    call(connection_id, "POST", "/v3/notes",
         json={"candidate_id": harvest_id(candidate_id, "candidate id"), "body": body, "visibility": "public"})


def notes_of(connection_id: str, candidate_id: int) -> list[dict]:
    """The candidate's notes (``GET /v3/notes``: docs/providers/greenhouse.md#harvest-notes)."""
    return list(pages(connection_id, "/v3/notes", {"candidate_ids": harvest_id(candidate_id, "candidate id")}))


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID
