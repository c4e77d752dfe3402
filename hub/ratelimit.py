"""A token bucket in Redis, shared by every process and machine: for the providers' rate limits
we call, and for callers' limits where guessing is possible (``limit_client``)."""
from __future__ import annotations

import hashlib
import logging
import math
import time

import redis
from redis.exceptions import RedisError

log = logging.getLogger("hub.ratelimit")

# Both scripts start by refilling the bucket by the time elapsed (Redis's clock, the same for
# every machine) and end by storing it, kept as long as it takes to refill completely (longer
# while reservations hold it in debt). They answer floats as strings: Lua numbers returned to
# Redis are truncated to integers.
_REFILL = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local function store()
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
end
"""

# Take a token if one is there: "0", else the seconds until one will be.
_TAKE = _REFILL + """
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
store()
return tostring(wait)
"""

# Reserve ``n`` tokens now, going into debt if need be: later reservations queue up behind
# earlier ones, spaced at the rate. Returns the seconds until the last of them is due ("0" when
# there were enough), or that wait negated when it would pass ``max_wait`` (nothing reserved).
_RESERVE = _REFILL + """
local n = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local wait = 0
if tokens < n then
  wait = (n - tokens) / rate
end
if wait > max_wait then
  store()
  return tostring(-wait)
end
tokens = tokens - n
store()
return tostring(wait)
"""


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; one ``acquire`` spends one token."""

    def __init__(self, client: redis.Redis, key: str, rate: float = 10.0, burst: int = 20):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.client = client
        self.key = key
        self.rate = float(rate)
        self.burst = int(burst)
        self._take = client.register_script(_TAKE)
        self._reserve = client.register_script(_RESERVE)

    def try_acquire(self) -> float:
        """Take a token now if there is one: returns 0.0, else the seconds to wait for one."""
        return float(self._take(keys=[self.key], args=[self.rate, self.burst]))

    def reserve(self, n: int = 1, max_wait: float = 600.0) -> tuple[bool, float]:
        """Reserve ``n`` tokens, due ``wait`` seconds from now: ``(True, wait)``; the caller runs
        then without taking them again. ``(False, wait)`` when that would be more than
        ``max_wait`` away: nothing is reserved. Shared by every process, like the tokens."""
        wait = float(self._reserve(keys=[self.key], args=[self.rate, self.burst, int(n), float(max_wait)]))
        return (wait >= 0, abs(wait))

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait until a token is taken (True) or ``timeout`` seconds would pass first (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return True
            if deadline is not None and time.monotonic() + wait > deadline:
                return False
            # Other processes compete for the same token, so check again rather than assume.
            time.sleep(wait)


def limit_client(scope: str, per_minute: int) -> None:
    """Refuse the calling address with 429 (and ``Retry-After``) once it has spent its budget
    for ``scope``: ``per_minute`` calls a minute, as a burst or spread out. Shared by every web
    process. With Redis down, calls pass, and the log says so."""
    from flask import request
    from werkzeug.exceptions import TooManyRequests

    from .extensions import get_redis

    address = hashlib.sha256((request.remote_addr or "").encode()).hexdigest()[:32]
    try:
        wait = TokenBucket(get_redis(), f"hub:rl:{scope}:{address}", rate=per_minute / 60,
                           burst=per_minute).try_acquire()
    except RedisError:
        log.warning("hub.ratelimit.unavailable scope=%s", scope)
        return
    if wait > 0:
        raise TooManyRequests("Too many requests. Wait a moment and try again.",
                              retry_after=max(1, math.ceil(wait)))
