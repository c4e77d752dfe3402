"""A thin client for Lever's REST API v1: tokens, pagination, the shared rate limit, errors."""
from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from flask import current_app, g
from rq import get_current_job

from hub.connections import access_token, mark_revoked
from hub.extensions import get_redis
from hub.http import session as shared_session
from hub.jobs import Defer
from hub.outbox import Refused
from hub.plugin import ConnectionUnusable
from hub.ratelimit import TokenBucket

log = logging.getLogger("wecp_lever.lever")

# Lever docs (/developer/documentation#webhooks): the origins a stage-change webhook fires for;
# all of them, so no candidate is missed.
ALL_ORIGINS = ["applied", "sourced", "referred", "university", "agency", "internal"]

#: Seconds to sleep; tests replace it so back-off does not slow them down.
sleep = time.sleep


# docs/providers/lever.md#ids: objects have UUIDs; built-in stages readable ids such as
# ``applicant-new``. Anything else never reaches a URL path.
LEVER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class InvalidId(ValueError):
    """An id from outside (a webhook's data, a form) that is not of Lever's id format."""


def lever_id(value, what: str = "id") -> str:
    """``value`` if it has the shape of a Lever id, else ``InvalidId``."""
    if not isinstance(value, str) or not LEVER_ID.fullmatch(value):
        raise InvalidId(f"{what} is not a Lever id")
    return value


def _path(*parts: str) -> str:
    """A URL path from fixed segments and ids; each id checked and quoted."""
    return "/" + "/".join(quote(lever_id(p) if i % 2 else p, safe="") for i, p in enumerate(parts))


#: An error code of Lever's (docs/providers/lever.md#rest-api): a short identifier; anything else
#: in that field is dropped rather than carried into an exception's text.
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


class LeverError(Exception):
    """Lever answered with an error (``status`` is None when it could not be reached)."""

    def __init__(self, status: int | None, code: str = "", message: str = "", *, method: str = "",
                 path: str = ""):
        code = code if _ERROR_CODE.fullmatch(code or "") else ""
        self.status, self.code, self.message = status, code, message
        self.method, self.path = method, path
        # Never the token or the headers, and never Lever's words: the text of an exception
        # reaches logs and the operators' dashboard, and Lever's message may quote a customer's
        # data. Its words are ``detail``, which only the admin's own pages show.
        super().__init__(f"Lever {method} {path} answered {status or 'nothing'}{' ' + code if code else ''}")

    @property
    def detail(self) -> str:
        """Lever's own words, for the admin of the organization whose call it was."""
        return self.message

    def for_admin(self) -> str:
        """The call, its answer and Lever's words: for the organization's own pages only."""
        return f"{self}: {self.message}" if self.message else str(self)


class LeverRefused(LeverError, Refused):
    """A 4xx (not 401 or 429): Lever will not do this however often we ask. Fails the work at
    once with Lever's reason (``hub.outbox.Refused``)."""


class NotFound(LeverRefused):
    """404: the object does not exist (or this token may not see it)."""


class RateLimited(LeverError):
    """429 still after the retries; ``retry_after`` says when to try again (seconds)."""

    def __init__(self, *args, retry_after: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


def _ms(value) -> int | None:
    """Lever timestamps are epoch milliseconds."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    raise TypeError(f"expected epoch milliseconds or a datetime, got {value!r}")


#: Background work takes a turn only this close (seconds): further ahead it would hold up the
#: invitations and notes that arrive meanwhile, so it waits for a background slot instead.
BACKGROUND_HORIZON = 2.0

# The end of the account's line of background work waiting (epoch seconds): the next one is
# placed after it and after the queued calls, one call's time later.
_BACKGROUND_SLOT = """
local t = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(ARGV[1])) + tonumber(ARGV[2])
redis.call('SET', KEYS[1], tostring(t), 'EX', 3600)
return tostring(t)
"""


def background_slot(connection_id: str, calls: int, wait: float) -> float:
    """Seconds until background work of ``calls`` may try for its turn: after the account's
    queued calls (due in ``wait`` s) and after the background work already waiting, one after
    another at the account's rate. It reserves no tokens: invitations and notes that arrive
    meanwhile still go first; the waiting ones come back in a line instead of all together
    (each come-back that finds no turn costs a run of its job: docs/performance.md, B5)."""
    bucket = account_bucket(connection_id)
    now = time.time()
    until = float(get_redis().eval(_BACKGROUND_SLOT, 1, f"{bucket.key}:background", now + max(0.0, wait),
                                   calls / bucket.rate))
    return max(0.0, until - now)


def plan_calls(calls: int, *, background: bool = False) -> None:
    """Say how many Lever calls the running job will make (default 1).

    Its first call then reserves all of them at once, so a job given back to wait for its turn
    (see ``LeverClient.request``) runs its calls in one go when it comes back: no call is made
    twice because a later one found no token. ``background`` work (tags) takes a turn only when
    one is free within ``BACKGROUND_HORIZON`` seconds; while other work holds the account's tokens
    longer than that it comes back later, so a bulk move's invitations are not held up by its tags.
    """
    g.lever_plan = max(1, int(calls))
    g.lever_background = background


def account_bucket(connection_id: str) -> TokenBucket:
    """The connection's (one Lever account's) rate-limit bucket, shared by every process."""
    config = current_app.config
    # Lever docs (/developer/documentation#rate-limits): 10 requests/s per token, bursts to 20.
    # A little under Lever's rate, and half its burst: work that waited for its turn may run a
    # little after it, several calls together when the workers were busy, and Lever's own
    # bucket must still have room for them then (docs/performance.md, B2 and B4).
    return TokenBucket(get_redis(), f"hub:ratelimit:wecp_lever:{connection_id}",
                       rate=float(config.get("LEVER_RATE_LIMIT", 10.0))
                       * float(config.get("LEVER_RATE_HEADROOM", 0.9)),
                       burst=max(1, int(int(config.get("LEVER_RATE_BURST", 20))
                                        * float(config.get("LEVER_BURST_HEADROOM", 0.5)))))


def _prepaid_key(job_id: str) -> str:
    return f"hub:ratelimit:wecp_lever:prepaid:{job_id}"


#: A run that starts this many seconds after its reserved calls were due does not spend them:
#: the calls of several late runs would reach Lever together, over its burst. It takes tokens
#: afresh, or reserves again (docs/performance.md, B2 and B4).
LATE_GRACE = 1.0


def _keep_reservation(redis, job_id: str, calls: int, wait: float) -> None:
    """Remember that ``calls`` are reserved for the job's next run, due ``wait`` s from now."""
    redis.set(_prepaid_key(job_id), f"{calls}:{time.time() + wait:.3f}", ex=int(wait) + 3600)


def _take_reservation(redis, job_id: str) -> int:
    """The calls reserved for this run of the job; 0 when none, or when their moment passed."""
    raw = redis.getdel(_prepaid_key(job_id))
    if not raw:
        return 0
    calls, _, due = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition(":")
    if due and time.time() > float(due) + LATE_GRACE:
        return 0
    return int(calls)


def admission(calls: int, *, background: bool = False):
    """A durable kind's ``admit`` (``hub.outbox``): when a row is stored, reserve the ``calls``
    its first run makes in its account's bucket, under its job id, and have the job enqueued for
    when they are due. The job then runs once, on its turn, instead of running only to find the
    tokens taken and be given back (two runs: docs/performance.md, B5).

    ``background`` work (tags) takes a turn only if one is free within ``BACKGROUND_HORIZON``
    seconds: invitations stored after it must not wait behind it. Otherwise it comes back once
    the queued calls are done, in line with the background work waiting (``background_slot``),
    without a first run that would only be given back.
    """
    def admit(row, job_id: str) -> float:
        horizon = BACKGROUND_HORIZON if background else float(current_app.config.get("LEVER_MAX_DEFER", 600))
        reserved, wait = account_bucket(row.connection_id).reserve(calls, max_wait=horizon)
        if reserved:
            _keep_reservation(get_redis(), job_id, calls, wait)
            return wait
        return background_slot(row.connection_id, calls, wait)

    return admit


class LeverClient:
    """Calls Lever for one connection; every call takes a token from the account's shared bucket.

    In a worker's job a call never waits for a token: the job's first call reserves its calls
    (``plan_calls``) in the account's bucket and, when they are not due yet, raises
    ``hub.jobs.Defer`` so the job gives its worker back and runs again when they are (without
    spending a retry); a 429 does the same after Lever's ``Retry-After``. Elsewhere (a page
    listing postings, the inline mode of the tests) a call waits for its token, as before.
    """

    def __init__(self, connection_id: str, http: requests.Session | None = None):
        config = current_app.config
        self.connection_id = connection_id
        self.base_url = config["LEVER_API_BASE_URL"].rstrip("/")
        # Kept alive between jobs, the environment read once (hub.http).
        self.http = http or shared_session()
        self.timeout = float(config.get("LEVER_TIMEOUT", 20))
        self.max_retries = int(config.get("LEVER_MAX_RETRIES", 3))
        self.max_wait = float(config.get("LEVER_MAX_WAIT", 30))
        # A job reserves its calls at most this far ahead; beyond that it is given back without
        # a reservation and tries again then.
        self.max_defer = float(config.get("LEVER_MAX_DEFER", 600))
        self.bucket = account_bucket(connection_id)

    # --- transport ---------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: dict | None = None,
                json: Any = None) -> Any:
        """One API call; returns the decoded JSON body (None for 204).

        GETs are retried on 5xx and network errors; other methods never are (Lever has no
        idempotency keys, so a repeated POST would write twice). A 429 is retried for every
        method: Lever did not act on it.
        """
        url = self.base_url + path
        safe = method.upper() == "GET"
        token = None
        refreshed = False
        attempt = 0
        deferrable = get_current_job() is not None
        while True:
            attempt += 1
            if deferrable:
                if not self._prepaid():
                    self._extra_token()
            elif not self.bucket.acquire(timeout=self.max_wait):
                raise RateLimited(429, "LocalRateLimit", "the shared Lever rate limit is saturated",
                                  method=method, path=path, retry_after=1.0)
            # After the turn: a run given back to wait for it needs no token.
            token = token or access_token(self.connection_id)
            try:
                response = self.http.request(method, url, params=params, json=json,
                                             headers={"Authorization": f"Bearer {token}",
                                                      "Accept": "application/json"},
                                             timeout=self.timeout)
            except requests.RequestException as exc:
                if safe and attempt <= self.max_retries:
                    sleep(self._backoff(attempt))
                    continue
                raise LeverError(None, type(exc).__name__, "Lever could not be reached",
                                 method=method, path=path) from None
            status = response.status_code
            if status == 401:
                if refreshed:
                    # A fresh token refused too: access was revoked in Lever.
                    reason = "Lever refuses the connection's tokens (access revoked in Lever?)"
                    mark_revoked(self.connection_id, reason)
                    raise ConnectionUnusable(self.connection_id, reason)
                # A token we believed valid: replace it once (across all processes), retry once.
                token = access_token(self.connection_id, rejected=token)
                refreshed = True
                continue
            if status == 429 and attempt <= self.max_retries:
                # Lever did not act on it (docs/providers/lever.md#rest-api): run again later.
                wait = self._retry_after(response) or self._backoff(attempt)
                if deferrable:
                    g.pop("lever_prepaid", None)
                    raise Defer(wait, "Lever answered 429")
                sleep(wait)
                continue
            if status >= 500 and safe and attempt <= self.max_retries:
                sleep(self._backoff(attempt))
                continue
            if status >= 400:
                raise self._error(response, method, path)
            if status == 204 or not response.content:
                return None
            return response.json()

    def ready(self) -> None:
        """In a job: make sure this run's planned calls (``plan_calls``) are reserved and due now,
        or raise ``Defer`` before the job does anything else (a run given back then costs no
        other work). Elsewhere nothing: calls wait for their tokens."""
        if get_current_job() is not None and g.get("lever_prepaid") is None:
            g.lever_prepaid = self._reserve_run()

    def _prepaid(self) -> bool:
        """In a job: spend one of the calls reserved for this run of it, reserving them first
        (or raise ``Defer`` until they are due). False once the run made more calls than it
        planned: those take tokens as usual."""
        prepaid = g.get("lever_prepaid")
        if prepaid is None:  # this run's first call
            prepaid = self._reserve_run()
        if prepaid <= 0:
            g.lever_prepaid = 0
            return False
        g.lever_prepaid = prepaid - 1
        return True

    def _extra_token(self) -> None:
        """In a job, a call beyond the run's plan (e.g. the users list behind a cache miss): a
        token free now, else the job is given back with every call of this run and this one
        reserved for its next run. It never waits for the token in the job: a worker held for
        ``LEVER_MAX_WAIT`` seconds is a worker other work waits for."""
        if self.bucket.try_acquire() == 0:
            g.lever_extra = g.get("lever_extra", 0) + 1
            return
        calls = int(g.get("lever_plan", 1)) + g.get("lever_extra", 0) + 1
        reserved, wait = self.bucket.reserve(calls, max_wait=self.max_defer)
        if reserved:
            _keep_reservation(get_redis(), get_current_job().id, calls, wait)
        g.pop("lever_prepaid", None)
        raise Defer(max(wait, 0.1), "waiting for the Lever rate limit (a call beyond the plan)")

    def _reserve_run(self) -> int:
        """The calls this run may make now: reserved by an earlier run of the job (given back
        until they were due) or when its row was stored (``admission``), else reserved now.
        Raises ``Defer`` when they are not due yet."""
        job = get_current_job()
        redis = get_redis()
        prepaid = _take_reservation(redis, job.id)
        if prepaid:
            return prepaid
        calls = int(g.get("lever_plan", 1))
        background = bool(g.get("lever_background"))
        reserved, wait = self.bucket.reserve(calls, max_wait=BACKGROUND_HORIZON if background else self.max_defer)
        if wait > 0:
            if reserved:
                _keep_reservation(redis, job.id, calls, wait)
            else:
                # Background work: back once the queued calls are done, in line with the other
                # background work waiting, not every second meanwhile.
                wait = background_slot(self.connection_id, calls, wait)
            raise Defer(wait, "waiting for the Lever rate limit")
        return calls

    @staticmethod
    def _backoff(attempt: int) -> float:
        # Full jitter: many workers backing off at once do not come back at the same instant.
        return random.uniform(0, min(8.0, 0.5 * 2 ** attempt))

    def _retry_after(self, response) -> float | None:
        # lever-api.md: whether Lever sends Retry-After is unverified; honour it when present.
        try:
            value = float(response.headers.get("Retry-After", ""))
        except ValueError:
            return None
        return min(max(value, 0.0), self.max_wait)

    def _error(self, response, method: str, path: str) -> LeverError:
        # Lever docs (/developer/documentation#errors): error bodies are {"code", "message"}.
        try:
            body = response.json()
            code, message = str(body.get("code", "")), str(body.get("message", ""))[:500]
        except (ValueError, AttributeError):
            code, message = "", ""
        status = response.status_code
        if status == 404:
            return NotFound(status, code, message, method=method, path=path)
        if status == 429:
            return RateLimited(status, code, message, method=method, path=path,
                               retry_after=self._retry_after(response))
        if 400 <= status < 500:
            return LeverRefused(status, code, message, method=method, path=path)
        return LeverError(status, code, message, method=method, path=path)

    def get(self, path: str, params: dict | None = None) -> Any:
        return self.request("GET", path, params=params)

    def iter_pages(self, path: str, params: dict | None = None) -> Iterator[dict]:
        """Every item of a list endpoint, page after page."""
        # Lever docs (/developer/documentation#pagination): lists answer {data, hasNext, next};
        # `next` goes back as `offset`; `limit` is 1-100.
        params = dict(params or {})
        params["limit"] = min(int(params.get("limit", 100)), 100)
        while True:
            body = self.get(path, params)
            yield from body.get("data", [])
            if not body.get("hasNext") or not body.get("next"):
                return
            params["offset"] = body["next"]

    # --- reads -------------------------------------------------------------------------------

    def list_postings(self, state: str | None = None) -> list[dict]:
        return list(self.iter_pages("/postings", {"state": state} if state else None))

    def get_posting(self, posting_id: str) -> dict:
        return self.get(_path("postings", posting_id))["data"]

    def list_stages(self) -> list[dict]:
        return list(self.iter_pages("/stages"))

    def list_users(self) -> list[dict]:
        return list(self.iter_pages("/users"))

    def get_opportunity(self, opportunity_id: str, expand_applications: bool = True) -> dict:
        params = {"expand": "applications"} if expand_applications else None
        return self.get(_path("opportunities", opportunity_id), params)["data"]

    def list_opportunities(self, posting_id: str | None = None, stage_id: str | None = None,
                           updated_at_start=None, expand_applications: bool = False) -> Iterator[dict]:
        """An iterator (accounts have many opportunities): pages are fetched as you go."""
        params: dict[str, Any] = {}
        if posting_id:
            params["posting_id"] = lever_id(posting_id, "posting id")
        if stage_id:
            params["stage_id"] = lever_id(stage_id, "stage id")
        if updated_at_start is not None:
            params["updated_at_start"] = _ms(updated_at_start)
        if expand_applications:
            params["expand"] = "applications"
        return self.iter_pages("/opportunities", params)

    def list_notes(self, opportunity_id: str) -> list[dict]:
        return list(self.iter_pages(_path("opportunities", opportunity_id, "notes")))

    def list_webhooks(self) -> list[dict]:
        return list(self.iter_pages("/webhooks"))

    # --- writes (never retried after Lever may have acted) ----------------------------------

    def add_note(self, opportunity_id: str, value: str, perform_as: str,
                 secret: bool = False) -> dict:
        # Lever docs (/developer/documentation#add-a-note): plain text; with OAuth, perform_as
        # names the Lever user the note is attributed to.
        return self.request("POST", _path("opportunities", opportunity_id, "notes"),
                            params={"perform_as": perform_as},
                            json={"value": value, "secret": secret})["data"]

    def add_tags(self, opportunity_id: str, tags: list[str], perform_as: str) -> dict:
        # Lever docs (/developer/documentation#update-opportunity-tags): there is no tags:write
        # scope; tags change through the opportunity.
        return self.request("POST", _path("opportunities", opportunity_id, "addTags"),
                            params={"perform_as": perform_as}, json={"tags": list(tags)})["data"]

    def remove_tags(self, opportunity_id: str, tags: list[str], perform_as: str) -> dict:
        return self.request("POST", _path("opportunities", opportunity_id, "removeTags"),
                            params={"perform_as": perform_as}, json={"tags": list(tags)})["data"]

    def change_stage(self, opportunity_id: str, stage_id: str, perform_as: str) -> dict:
        # Lever docs (/developer/documentation#update-opportunity-stage): this fires another
        # candidateStageChange webhook; handlers must not loop on it.
        return self.request("PUT", _path("opportunities", opportunity_id, "stage"),
                            params={"perform_as": lever_id(perform_as, "user id")},
                            json={"stage": lever_id(stage_id, "stage id")})["data"]

    def create_webhook(self, url: str, event: str, origins: list[str] | None = None) -> dict:
        """Create a webhook; the result's ``configuration.signatureToken`` is shown only now."""
        # Lever docs (/developer/documentation#webhooks): 201 with the signature token, which
        # no later call returns.
        body = {"event": event, "url": url,
                "configuration": {"conditions": {"origins": origins or ALL_ORIGINS}}}
        return self.request("POST", "/webhooks", json=body)["data"]

    def delete_webhook(self, webhook_id: str) -> None:
        self.request("DELETE", _path("webhooks", webhook_id))
