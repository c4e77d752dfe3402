"""Configuration: defaults, environment overrides, and the checks production insists on."""
from __future__ import annotations

import logging
import os

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
    "HUB_QUEUE_MODE": "rq",  # "rq" or "inline" (the demo's last resort when no Redis exists)
    "HUB_COMPANY_NAME": "WeCP",
    "SMTP_URL": "",
    # "1": production without SMTP_URL on purpose (emails stay in the outbox), logged at start.
    "HUB_MAIL_OUTBOX_ONLY": "",
    "MAIL_FROM": "WeCP <no-reply@wecp.local>",
    "MAX_CONTENT_LENGTH": "1048576",
    "HUB_WEBHOOK_MAX_BYTES": "262144",
    # Failed sign-ins a minute: per account from one address, and per address over all accounts.
    "HUB_LOGIN_ATTEMPTS_PER_MINUTE": "10",
    "HUB_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE": "50",
    # Calls a minute per client address where guessing is possible: bearer API calls, and
    # candidate and report link lookups.
    "HUB_API_CALLS_PER_MINUTE": "600",
    "HUB_LINK_LOOKUPS_PER_MINUTE": "120",
    # How many proxies in front of the hub set X-Forwarded-For/-Proto/-Host; 0 trusts none.
    "HUB_TRUSTED_PROXIES": "0",
    # A signed-in session ends after this long without a request (8 hours) ...
    "HUB_SESSION_IDLE_SECONDS": "28800",
    # ... and this long after sign-in whatever its use (7 days).
    "HUB_SESSION_MAX_SECONDS": "604800",
}

#: Settings whose environment value is an integer.
INTEGERS = {"MAX_CONTENT_LENGTH", "HUB_WEBHOOK_MAX_BYTES", "HUB_LOGIN_ATTEMPTS_PER_MINUTE",
            "HUB_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE", "HUB_TRUSTED_PROXIES",
            "HUB_API_CALLS_PER_MINUTE", "HUB_LINK_LOOKUPS_PER_MINUTE",
            "HUB_SESSION_IDLE_SECONDS", "HUB_SESSION_MAX_SECONDS"}

#: A development-only encryption key so a fresh clone runs; production refuses it.
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE="


class ConfigError(RuntimeError):
    """Raised when the configuration is unsafe or incomplete for the chosen environment."""


def load(app, overrides: dict | None = None) -> None:
    """Fill ``app.config`` from defaults, the environment, then ``overrides`` (tests)."""
    for key, default in ENVIRONMENT.items():
        value = os.environ.get(key, default)
        if key in INTEGERS and value is not None:
            value = int(value)
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
    if isinstance(cfg["HUB_PLUGINS"], str):
        cfg["HUB_PLUGINS"] = [p.strip() for p in cfg["HUB_PLUGINS"].split(",") if p.strip()] \
            or _default_plugins()
    keys = cfg["HUB_ENCRYPTION_KEYS"]
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.split(",") if k.strip()]
    cfg["HUB_ENCRYPTION_KEYS"] = keys
    cfg["HUB_BASE_URL"] = cfg["HUB_BASE_URL"].rstrip("/")
    cfg["PRODUCTION"] = cfg["HUB_ENV"] == "production"
    trusted = cfg.get("HUB_TRUSTED_HOSTS")
    if isinstance(trusted, str):
        trusted = [h.strip() for h in trusted.split(",") if h.strip()]
    cfg["TRUSTED_HOSTS"] = trusted or None

    if cfg["PRODUCTION"]:
        _check_production(cfg)
    elif not cfg["HUB_ENCRYPTION_KEYS"]:
        cfg["HUB_ENCRYPTION_KEYS"] = [DEV_ENCRYPTION_KEY]


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


def _key_problem(text: str) -> str | None:
    """Why an encryption key is unusable, or None."""
    import base64
    import binascii

    try:
        key = base64.urlsafe_b64decode(text.encode())
    except (binascii.Error, ValueError):
        return "is not urlsafe base64"
    if len(key) != 32:
        return "is not 32 bytes"
    if len(set(key)) < 8:
        return "is not random (all zeros or a repeated pattern)"
    return None


def _check_production(cfg) -> None:
    problems = []
    secret = cfg["SECRET_KEY"] or ""
    if secret == DEV_SECRET_KEY or len(secret) < 32:
        problems.append("SECRET_KEY must be set to a random value of at least 32 characters")
    elif len(set(secret)) < 16:
        problems.append("SECRET_KEY has too little variety to be random (python -c 'import secrets; "
                        "print(secrets.token_urlsafe(48))')")
    keys = cfg["HUB_ENCRYPTION_KEYS"]
    if not keys or DEV_ENCRYPTION_KEY in keys:
        problems.append("HUB_ENCRYPTION_KEYS must hold at least one key (hub keys generate)")
    else:
        for i, key in enumerate(keys, 1):
            problem = _key_problem(key)
            if problem:
                problems.append(f"HUB_ENCRYPTION_KEYS: key {i} {problem} (hub keys generate)")
    if not cfg["TRUSTED_HOSTS"]:
        problems.append("HUB_TRUSTED_HOSTS must name the host names the hub answers to")
    if not cfg["SMTP_URL"]:
        if cfg.get("HUB_MAIL_OUTBOX_ONLY") == "1":
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
