"""A token bucket in Redis, shared by every process and machine that calls one rate-limited API."""
from __future__ import annotations

import time

import redis

# One atomic step: refill by elapsed time (Redis's clock, the same for every machine), then take
# a token if one is there. Returns "0" when a token was taken, else the seconds until one will
# be; a float as a string, because Lua numbers returned to Redis are truncated to integers.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
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

    def try_acquire(self) -> float:
        """Take a token now if there is one: returns 0.0, else the seconds to wait for one."""
        return float(self._take(keys=[self.key], args=[self.rate, self.burst]))

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
