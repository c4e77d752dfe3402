"""Rate limiting per access token, and injected faults: errors, latency, storms, lost webhooks."""
from __future__ import annotations

import math
import random
import re
import time

from .state import Fault, SandboxState, new_id


def take_token(state: SandboxState, key: str, rate: float, burst: int) -> float | None:
    """Spend one request from `key`'s bucket; None if allowed, else seconds until one is free.

    Lever docs (/developer/documentation#rate-limits): 10 requests per second per token,
    bursting to 20.
    """
    now = time.monotonic()
    with state.lock:
        tokens, last = state.buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens >= 1.0:
            state.buckets[key] = (tokens - 1.0, now)
            return None
        state.buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate if rate > 0 else 60.0


def retry_after_header(wait_seconds: float) -> str:
    # Retry-After carries whole seconds (RFC 9110); never advertise 0.
    return str(max(1, math.ceil(wait_seconds)))


def add_fault(state: SandboxState, spec: dict) -> Fault:
    route = spec.get("route") or ""
    re.compile(route)  # fail early on a bad pattern
    storm = float(spec.get("storm_seconds") or 0)
    error_rate = float(spec.get("error_rate") or 0)
    if not 0 <= error_rate <= 1:
        raise ValueError("error_rate must be between 0 and 1")
    fault = Fault(
        id=new_id(), route=route, error_rate=error_rate, status=int(spec.get("status") or 500),
        latency_ms=int(spec.get("latency_ms") or 0),
        storm_until=time.time() + storm if storm > 0 else None,
        drop_webhooks=bool(spec.get("drop_webhooks")),
        drop_rate=float(spec.get("drop_rate", 1.0)),
        retry_after=float(spec.get("retry_after") or 1.0),
    )
    with state.lock:
        state.faults.append(fault)
    return fault


def request_fault(state: SandboxState, path: str) -> tuple[float, int | None, float]:
    """Latency (seconds) to add to a request on `path`, the error status to answer, if any, and
    the Retry-After seconds of the fault that chose that status."""
    latency, status, retry_after = 0.0, None, 1.0
    now = time.time()
    with state.lock:
        faults = [f for f in state.faults if re.search(f.route, path)]
    for fault in faults:
        latency += fault.latency_ms / 1000.0
        in_storm = fault.storm_until is not None and now < fault.storm_until
        unlucky = fault.error_rate and random.random() < fault.error_rate
        if status is None and (in_storm or unlucky):
            status, retry_after = fault.status, fault.retry_after
    return latency, status, retry_after


def drop_delivery(state: SandboxState, url: str) -> bool:
    """Whether a webhook delivery to `url` should be silently lost (route is matched on the URL)."""
    with state.lock:
        faults = [f for f in state.faults if f.drop_webhooks and re.search(f.route, url)]
    return any(random.random() < f.drop_rate for f in faults)
