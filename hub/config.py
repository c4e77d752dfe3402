"""Configuration: defaults, environment overrides, and the checks production insists on."""
from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import math
import os
import re
from collections import Counter
from urllib.parse import urlsplit

log = logging.getLogger("hub.config")

#: The secret used when none is configured. Production refuses to start with it.
DEV_SECRET_KEY = "dev-insecure-secret-key"

#: Settings read from the environment, with their defaults. ``None`` means "no default".
ENVIRONMENT = {
    "HUB_ENV": "development",
    "SECRET_KEY": DEV_SECRET_KEY,
    "DATABASE_URL": None,  # default: SQLite file in the instance folder, filled in below
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "HUB_ENCRYPTION_KEYS": "",
    "HUB_BASE_URL": "http://127.0.0.1:5000",
    "HUB_PLUGINS": "",  # empty: plugins.DEFAULT_PLUGINS, the integrations this hub ships
    "HUB_TRUSTED_HOSTS": "",
    # The bearer token a metrics scraper presents at /metrics (signed-in operators need none);
    # empty: only operators. See docs/operations.md.
    "HUB_METRICS_TOKEN": "",
    "HUB_QUEUE_MODE": "rq",  # "rq" or "inline" (the demo's last resort when no Redis exists)
    "HUB_COMPANY_NAME": "WeCP",
    "SMTP_URL": "",
    # "1": production without SMTP_URL on purpose (emails stay in the outbox), logged at start.
    "HUB_MAIL_OUTBOX_ONLY": "",
    "MAIL_FROM": "WeCP <no-reply@wecp.local>",
    "MAX_CONTENT_LENGTH": "1048576",
    "HUB_WEBHOOK_MAX_BYTES": "262144",
    # Partner endpoints (the provider calls WeCP with a partner key): largest body, and calls a
    # minute per key (a burst or spread out); refused keys spend their address's budget.
    "HUB_PARTNER_MAX_BYTES": "65536",
    "HUB_PARTNER_CALLS_PER_MINUTE": "300",
    # Failed sign-ins a minute: per account from one address, and per address over all accounts.
    "HUB_LOGIN_ATTEMPTS_PER_MINUTE": "10",
    "HUB_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE": "50",
    # Calls a minute per client address where guessing is possible: bearer API calls, and
    # candidate and report link lookups.
    "HUB_API_CALLS_PER_MINUTE": "600",
    "HUB_LINK_LOOKUPS_PER_MINUTE": "120",
    # How many proxies in front of the hub set X-Forwarded-For/-Proto/-Host; 0 trusts none.
    "HUB_TRUSTED_PROXIES": "0",
    # "Resend invitation": one invitation at most once every 10 minutes and 5 times a day, one
    # organization at most 100 resends an hour (the page says so beside the button).
    "HUB_RESEND_INTERVAL_SECONDS": "600",
    "HUB_RESENDS_PER_INVITATION_PER_DAY": "5",
    "HUB_RESENDS_PER_ORGANIZATION_PER_HOUR": "100",
    # A signed-in session ends after this long without a request (8 hours) ...
    "HUB_SESSION_IDLE_SECONDS": "28800",
    # ... and this long after sign-in whatever its use (7 days).
    "HUB_SESSION_MAX_SECONDS": "604800",
}

#: Settings whose environment value is an integer.
INTEGERS = {"MAX_CONTENT_LENGTH", "HUB_WEBHOOK_MAX_BYTES", "HUB_PARTNER_MAX_BYTES",
            "HUB_PARTNER_CALLS_PER_MINUTE", "HUB_LOGIN_ATTEMPTS_PER_MINUTE",
            "HUB_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE", "HUB_TRUSTED_PROXIES",
            "HUB_API_CALLS_PER_MINUTE", "HUB_LINK_LOOKUPS_PER_MINUTE",
            "HUB_SESSION_IDLE_SECONDS", "HUB_SESSION_MAX_SECONDS", "HUB_RESEND_INTERVAL_SECONDS",
            "HUB_RESENDS_PER_INVITATION_PER_DAY", "HUB_RESENDS_PER_ORGANIZATION_PER_HOUR"}

#: A development-only encryption key so a fresh clone runs; production refuses it.
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE="

#: The values ``HUB_ENV`` may take (any case, surrounding spaces ignored); anything else is refused.
ENVIRONMENTS = ("development", "testing", "production")

_GENERATE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
_URLSAFE_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")


class ConfigError(RuntimeError):
    """Raised when the configuration is unsafe or incomplete for the chosen environment."""


def load(app, overrides: dict | None = None) -> None:
    """Fill ``app.config`` from defaults, the environment, then ``overrides`` (tests)."""
    for key, default in ENVIRONMENT.items():
        value = os.environ.get(key, default)
        if key in INTEGERS and value is not None:
            value = _integer(key, value)
        app.config[key] = value
    # Flask's own defaults leave SameSite unset; ours apply unless a caller overrides them.
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      WTF_CSRF_TIME_LIMIT=None)
    if overrides:
        app.config.update(overrides)

    cfg = app.config
    if not cfg.get("DATABASE_URL"):
        os.makedirs(app.instance_path, exist_ok=True)
        cfg["DATABASE_URL"] = "sqlite:///" + os.path.join(app.instance_path, "hub.sqlite3")
    cfg["SQLALCHEMY_DATABASE_URI"] = _sqlalchemy_url(cfg["DATABASE_URL"])
    cfg.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    cfg["HUB_PLUGINS"] = plugin_paths(cfg["HUB_PLUGINS"])
    keys = cfg["HUB_ENCRYPTION_KEYS"]
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.split(",") if k.strip()]
    cfg["HUB_ENCRYPTION_KEYS"] = keys
    cfg["HUB_BASE_URL"] = cfg["HUB_BASE_URL"].rstrip("/")
    # "Production" or "production " must not quietly run development (issue #39, 5).
    env = str(cfg["HUB_ENV"] or "").strip().lower()
    if env not in ENVIRONMENTS:
        raise ConfigError(f"HUB_ENV must be one of {', '.join(ENVIRONMENTS)}, not {cfg['HUB_ENV']!r}")
    cfg["HUB_ENV"] = env
    cfg["PRODUCTION"] = env == "production"
    # A negative count would take the client's address from a header the caller writes.
    if not 0 <= int(cfg["HUB_TRUSTED_PROXIES"]) <= 10:
        raise ConfigError("HUB_TRUSTED_PROXIES must be 0 (no proxy) or the number of proxies in front "
                          f"of the hub (at most 10), not {cfg['HUB_TRUSTED_PROXIES']!r}")
    cfg["SMTP_URL"] = (cfg.get("SMTP_URL") or "").strip()
    trusted = cfg.get("HUB_TRUSTED_HOSTS")
    if isinstance(trusted, str):
        trusted = [h.strip() for h in trusted.split(",") if h.strip()]
    cfg["TRUSTED_HOSTS"] = trusted or None

    if cfg["PRODUCTION"]:
        _check_production(cfg)
    elif not cfg["HUB_ENCRYPTION_KEYS"]:
        cfg["HUB_ENCRYPTION_KEYS"] = [DEV_ENCRYPTION_KEY]


def plugin_paths(value) -> list[str]:
    """The plugins ``HUB_PLUGINS`` names: a comma-separated string or a list; empty (or unset)
    means the integrations this hub ships. The one reading of it, for the hub and its tests."""
    if isinstance(value, str):
        value = [p.strip() for p in value.split(",") if p.strip()]
    return list(value) if value else _default_plugins()


def _default_plugins() -> list[str]:
    """The integrations this hub ships (``plugins.DEFAULT_PLUGINS``), when HUB_PLUGINS is unset."""
    try:
        from plugins import DEFAULT_PLUGINS
    except ImportError:  # installed without the plugins package
        return []
    return list(DEFAULT_PLUGINS)


def _sqlalchemy_url(url: str) -> str:
    # psycopg 3 is the driver we ship; plain postgres URLs would otherwise ask for psycopg2.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _integer(key: str, value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a whole number, not {value!r}") from None


def decode_key(text: str) -> bytes:
    """An encryption key's 32 bytes, decoded strictly: exactly what ``hub keys generate`` prints
    (43 urlsafe base64 characters and ``=``). Quotes, spaces, stray characters or another
    spelling of the same bytes raise ``ValueError``: lenient decoding let the published
    development key through in disguise (issue #39, 3)."""
    if not isinstance(text, str) or not _URLSAFE_KEY.fullmatch(text):
        hint = " (remove the quotes around it)" if isinstance(text, str) and text[:1] in "\"'" else ""
        raise ValueError(f"is not 32 bytes written as 43 urlsafe base64 characters and '='{hint}")
    try:
        key = base64.b64decode(text, altchars=b"-_", validate=True)
    except binascii.Error:
        raise ValueError("is not urlsafe base64") from None
    if base64.urlsafe_b64encode(key).decode() != text:
        raise ValueError("is not in its one canonical spelling (hub keys generate)")
    return key


def not_random(data: bytes | str, *, run: int, distinct: int, repeat: int) -> str | None:
    """Why ``data`` is not what a random generator makes, or None.

    Refused: fewer than ``distinct`` different symbols; ``run`` symbols in a row with the same
    step (``aaaa…``, ``abcd…``, ``0123…``, ``bytes(range(32))``); a stretch of ``repeat`` symbols
    that occurs twice (a repeated pattern); and under 80 bits of entropy by the symbols' own
    frequencies. The thresholds keep a false refusal of generated values far below one in a
    million (a run of 6 equal steps in 32 random bytes: ~10⁻⁸)."""
    symbols = list(data.encode() if isinstance(data, str) else data)
    if len(set(symbols)) < distinct:
        return "has too few different characters"
    steps = [b - a for a, b in zip(symbols, symbols[1:])]
    length = 1
    for before, step in zip(steps, steps[1:]):
        length = length + 1 if step == before else 1
        if length >= run - 1:
            return "holds a run (like abcdef, 012345 or aaaaaa)"
    seen = set()
    for i in range(len(symbols) - repeat + 1):
        chunk = tuple(symbols[i:i + repeat])
        if chunk in seen:
            return "repeats a pattern"
        seen.add(chunk)
    counts = Counter(symbols)
    bits = -sum(n * math.log2(n / len(symbols)) for n in counts.values())
    if bits < 80:
        return "has too little entropy"
    return None


def _key_problem(text: str) -> str | None:
    """Why an encryption key is unusable in production, or None."""
    try:
        key = decode_key(text)
    except ValueError as exc:
        return str(exc)
    if key == decode_key(DEV_ENCRYPTION_KEY):
        return "is the published development key"
    problem = not_random(key, run=6, distinct=20, repeat=4)
    if problem:
        return f"is not random: it {problem}"
    return None


def endpoint_problem(name: str, url: str) -> str | None:
    """Why a provider endpoint may not be used in production, or None: it must be https and name
    a public host (loopback, private and link-local addresses are for development stand-ins)."""
    parts = urlsplit((url or "").strip())
    if parts.scheme != "https" or not parts.hostname:
        return f"{name} must be an https:// URL in production, not {url!r}"
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith((".localhost", ".local")):
        return f"{name} names a local host ({host}) in production"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_global:
        return f"{name} names a loopback or private address ({host}) in production"
    return None


def _smtp_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        return ("SMTP_URL must be smtp://[user:pass@]host[:port][?starttls=1] or smtps://…, "
                f"not a {parts.scheme or 'scheme-less'} URL")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "SMTP_URL has a port that is not a number"
    return None


def _check_production(cfg) -> None:
    problems = []
    secret = cfg["SECRET_KEY"] or ""
    if isinstance(secret, bytes):
        secret = secret.decode("latin-1")
    if secret.strip() == DEV_SECRET_KEY or len(secret) < 32:
        problems.append(f"SECRET_KEY must be set to a random value of at least 32 characters ({_GENERATE_SECRET})")
    elif len(set(secret)) < 8:
        problems.append(f"SECRET_KEY has too little variety to be random ({_GENERATE_SECRET})")
    else:
        problem = not_random(secret, run=8, distinct=8, repeat=8)
        if problem:
            problems.append(f"SECRET_KEY is not random: it {problem} ({_GENERATE_SECRET})")
    keys = cfg["HUB_ENCRYPTION_KEYS"]
    if not keys:
        problems.append("HUB_ENCRYPTION_KEYS must hold at least one key (hub keys generate)")
    else:
        for i, key in enumerate(keys, 1):
            problem = _key_problem(key)
            if problem:
                problems.append(f"HUB_ENCRYPTION_KEYS: key {i} {problem} (hub keys generate)")
    if not cfg["TRUSTED_HOSTS"]:
        problems.append("HUB_TRUSTED_HOSTS must name the host names the hub answers to")
    if cfg["SMTP_URL"]:
        problem = _smtp_problem(cfg["SMTP_URL"])
        if problem:
            problems.append(problem)
    elif cfg.get("HUB_MAIL_OUTBOX_ONLY") == "1":
        log.warning("hub.config.no_smtp: HUB_MAIL_OUTBOX_ONLY=1 in production: no email leaves "
                    "the hub; candidates receive no invitation")
    else:
        problems.append("SMTP_URL must be set, or no candidate ever receives an email (to keep "
                        "emails in the outbox on purpose, set HUB_MAIL_OUTBOX_ONLY=1)")
    if not cfg["HUB_BASE_URL"].startswith("https://"):
        problems.append("HUB_BASE_URL must be an https:// URL (providers deliver webhooks over HTTPS only)")
    if cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        problems.append("DATABASE_URL must point at PostgreSQL, shared by every web process and worker")
    if cfg["HUB_QUEUE_MODE"] != "rq":
        problems.append("HUB_QUEUE_MODE must be 'rq' (an in-process queue loses work on restart)")
    if problems:
        raise ConfigError("refusing to start in production: " + "; ".join(problems))
    cfg["SESSION_COOKIE_SECURE"] = True
    cfg["PREFERRED_URL_SCHEME"] = "https"
