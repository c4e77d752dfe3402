"""Short-lived Redis caches of Lever data that rarely changes (users, postings, stages)."""
from __future__ import annotations

import json
from collections.abc import Callable

from flask import current_app

from hub.extensions import get_redis

from .lever import LeverClient

#: Seconds a cached Lever list stays fresh. Users, postings and stages change rarely, and every
#: invitation would otherwise spend Lever's rate limit re-reading them.
TTL = 300


def _cached(connection_id: str, name: str, load: Callable[[], object], ttl: int | None = None):
    key = f"hub:cache:wecp_lever:{connection_id}:{name}"
    redis = get_redis()
    raw = redis.get(key)
    if raw is not None:
        return json.loads(raw)
    value = load()
    redis.set(key, json.dumps(value), ex=ttl or current_app.config.get("LEVER_CACHE_TTL", TTL))
    return value


def active_user_ids(connection_id: str) -> set[str]:
    users = _cached(connection_id, "users", lambda: [
        {"id": u["id"], "deactivatedAt": u.get("deactivatedAt")}
        for u in LeverClient(connection_id).list_users()])
    return {u["id"] for u in users if not u.get("deactivatedAt")}


def posting(connection_id: str, posting_id: str) -> dict:
    return _cached(connection_id, f"posting:{posting_id}", lambda: {
        k: v for k, v in LeverClient(connection_id).get_posting(posting_id).items()
        if k in ("id", "text", "state", "owner", "hiringManager", "user")})


def stages(connection_id: str) -> list[dict]:
    return _cached(connection_id, "stages", lambda: [
        {"id": s["id"], "text": s.get("text", "")} for s in LeverClient(connection_id).list_stages()])


def postings(connection_id: str) -> list[dict]:
    """Every posting but closed ones, for the link picker (cached briefly)."""
    keep = ("id", "text", "state", "owner", "hiringManager", "user", "categories")
    return _cached(connection_id, "postings", lambda: [
        {k: p.get(k) for k in keep} for p in LeverClient(connection_id).list_postings()
        if p.get("state") != "closed"], ttl=60)


def forget(connection_id: str) -> None:
    redis = get_redis()
    for key in redis.scan_iter(f"hub:cache:wecp_lever:{connection_id}:*"):
        redis.delete(key)
