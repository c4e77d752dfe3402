"""The hub's own commands (users, operators, API tokens, keys, doctor), attached to ``app.cli``
by ``init_app``; the ``hub`` entry point that runs them is ``hub.cli``."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from .extensions import db


@click.group("users")
def users():
    """Manage WeCP staff accounts."""


@users.command("create")
@click.option("--org", "org_name", required=True, help="Organization name (created when new).")
@click.option("--email", required=True)
@click.option("--password", required=True, prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--role", type=click.Choice(["member", "admin", "super_admin"]), default="member")
@click.option("--name", default="")
@with_appcontext
def users_create(org_name, email, password, role, name):
    """Create a user, and the organization when it does not exist yet."""
    from .auth import create_user

    try:
        user = create_user(org_name, email, password, role, name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"created {user.role} {user.email} in {org_name}")


def _user(email: str):
    from .models import User

    user = db.session.scalar(db.select(User).filter_by(email=email.strip().lower()))
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    return user


@users.command("list")
@click.option("--org", "org_name", default=None, help="Only this organization's users.")
@with_appcontext
def users_list(org_name):
    """Every user: email, organization, role, whether active, last sign-in."""
    from .models import Organization, User

    query = db.select(User, Organization.name).join(Organization).order_by(Organization.name, User.email)
    if org_name:
        query = query.where(Organization.name == org_name)
    for user, org in db.session.execute(query):
        last = user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "never"
        click.echo(f"{user.email}\t{org}\t{user.role}\t{'active' if user.active else 'deactivated'}"
                   f"\tlast sign-in: {last}")


@users.command("set-password")
@click.option("--email", required=True)
@click.option("--password", required=True, prompt=True, hide_input=True, confirmation_prompt=True)
@with_appcontext
def users_set_password(email, password):
    """Set a user's password; their sessions end at once, in every web process."""
    from .auth import change_password

    user = _user(email)
    try:
        ended = change_password(user, password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"password of {user.email} changed; {ended} session(s) ended")


@users.command("deactivate")
@click.option("--email", required=True)
@with_appcontext
def users_deactivate(email):
    """Deactivate a user: their sessions end at once and their API tokens get 401."""
    from .auth import set_active

    user = _user(email)
    ended = set_active(user, False)
    db.session.commit()
    click.echo(f"deactivated {user.email}; {ended} session(s) ended")


@users.command("reactivate")
@click.option("--email", required=True)
@with_appcontext
def users_reactivate(email):
    """Let a deactivated user sign in again (their API tokens work again unless revoked)."""
    from .auth import set_active

    user = _user(email)
    set_active(user, True)
    db.session.commit()
    click.echo(f"reactivated {user.email}")


@click.group("operators")
def operators():
    """The people who run the hub: the job dashboard is theirs alone. Only this CLI manages them."""


@operators.command("add")
@click.option("--email", required=True)
@click.option("--password", required=True, prompt=True, hide_input=True, confirmation_prompt=True)
@with_appcontext
def operators_add(email, password):
    """Add an operator; they sign in on the hub's sign-in page."""
    from .auth import create_operator

    try:
        operator = create_operator(email, password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"added operator {operator.email}")


@operators.command("list")
@with_appcontext
def operators_list():
    """Every operator, with when they last signed in."""
    from .models import Operator

    for operator in db.session.scalars(db.select(Operator).order_by(Operator.email)):
        last = operator.last_login_at.isoformat(timespec="seconds") if operator.last_login_at else "never"
        click.echo(f"{operator.email}\tlast sign-in: {last}")


@operators.command("remove")
@click.option("--email", required=True)
@with_appcontext
def operators_remove(email):
    """Remove an operator: their next request finds no operator and is signed out."""
    from .models import Operator, audit

    operator = db.session.scalar(db.select(Operator).filter_by(email=email.strip().lower()))
    if operator is None:
        raise click.ClickException(f"no operator with email {email}")
    audit("operator.removed", target=f"operator:{operator.id}")
    db.session.delete(operator)
    db.session.commit()
    click.echo(f"removed operator {operator.email}")


@click.group("api-tokens")
def api_tokens():
    """Personal tokens for the JSON API."""


@api_tokens.command("create")
@click.option("--email", required=True)
@click.option("--name", default="cli")
@click.option("--days", type=click.Choice(["30", "90", "365"]), default="90", help="How long it lasts.")
@with_appcontext
def api_tokens_create(email, name, days):
    """Create a token and print it once; only its hash is kept."""
    from .auth import issue_api_token

    _, plaintext = issue_api_token(_user(email), name, int(days))
    db.session.commit()
    click.echo(plaintext)


@api_tokens.command("list")
@click.option("--email", default=None, help="Only this user's tokens.")
@with_appcontext
def api_tokens_list(email):
    """Tokens with their id, owner, name, status, last use and expiry (never the token itself)."""
    from .models import ApiToken, User

    query = db.select(ApiToken).join(User).order_by(User.email, ApiToken.id)
    if email:
        query = query.where(User.id == _user(email).id)
    for token in db.session.scalars(query):
        used = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never"
        expires = token.expires_at.isoformat(timespec="seconds") if token.expires_at else "never"
        click.echo(f"{token.id}\t{token.user.email}\t{token.name}\t{token.status}\tlast used: {used}"
                   f"\texpires: {expires}")


@api_tokens.command("revoke")
@click.option("--id", "token_id", type=int, required=True)
@with_appcontext
def api_tokens_revoke(token_id):
    """Revoke a token: it gets 401 from its next call."""
    from .auth import revoke_api_token
    from .models import ApiToken

    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise click.ClickException(f"no API token {token_id}")
    revoke_api_token(token)
    db.session.commit()
    click.echo(f"revoked token {token.id} ({token.name}) of {token.user.email}")


@click.group("keys")
def keys():
    """Encryption keys for secrets at rest."""


@keys.command("generate")
def keys_generate():
    """Print a new random key for HUB_ENCRYPTION_KEYS."""
    from .crypto import generate_key

    click.echo(generate_key())


@keys.command("rotate")
@with_appcontext
def keys_rotate():
    """Re-encrypt every secret under the first key of HUB_ENCRYPTION_KEYS."""
    from .crypto import ENCRYPTED_FIELDS
    from .schema import histories

    # The hub's and the loaded plugins' tables: a plugin's module may be imported while the
    # plugin is not loaded here (its tables need not exist).
    loaded = tuple(h.module_prefix for h in histories())
    changed = 0
    for model, field in ENCRYPTED_FIELDS:
        if not model.__module__.startswith(loaded):
            continue
        for row in db.session.scalars(db.select(model).where(
                getattr(model, field.column).is_not(None))):
            changed += field.rotate(row)
    db.session.commit()
    click.echo(f"re-encrypted {changed} secret(s) under key 1 of {len(current_app.config['HUB_ENCRYPTION_KEYS'])}")


@click.command("doctor", short_help="Check what the hub depends on; say what to fix.")
@with_appcontext
def doctor():
    """Check the configuration, PostgreSQL, Redis, SMTP and each provider; say what to fix."""
    results = list(_doctor_checks())
    width = max(len(name) for name, _, _ in results)
    for name, ok, detail in results:
        click.echo(f"{'ok  ' if ok else 'FIX '} {name.ljust(width)}  {detail}")
    failed = [name for name, ok, _ in results if not ok]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(results)} checks need fixing: {', '.join(failed)}")
    click.echo(f"all {len(results)} checks passed")


def _doctor_checks():
    """(what, fine?, what was found or what to do) for each thing the hub depends on."""
    import smtplib
    from urllib.parse import urlsplit

    import requests
    import sqlalchemy as sa

    from .extensions import get_redis
    from .registry import all_plugins
    from .schema import histories

    cfg = current_app.config
    if cfg.get("PRODUCTION"):
        yield "configuration", True, "production settings accepted at start-up"
    else:
        yield "configuration", True, "development settings (HUB_ENV is not production)"
    try:
        db.session.execute(sa.text("SELECT 1"))
        behind = []
        with db.engine.connect() as conn:
            from alembic.migration import MigrationContext

            for history in histories():
                current = set(MigrationContext.configure(
                    conn, opts={"version_table": history.version_table}).get_current_heads())
                if current != set(history.script().get_heads()):
                    behind.append(history.key)
        yield ("database", not behind, f"{db.engine.dialect.name} answers; schema up to date" if not behind
               else f"schema behind for {', '.join(behind)}: run `hub db upgrade`")
    except Exception as exc:
        yield "database", False, f"cannot reach it ({type(exc).__name__}): check DATABASE_URL and that the server runs"
    try:
        get_redis().ping()
        yield "redis", True, "answers PING"
    except Exception as exc:
        yield "redis", False, f"cannot reach it ({type(exc).__name__}): check REDIS_URL and that redis-server runs"
    smtp_url = cfg.get("SMTP_URL")
    if not smtp_url:
        yield "smtp", not cfg.get("PRODUCTION"), "SMTP_URL not set: emails stay in the outbox (/dev/outbox)"
    else:
        url = urlsplit(smtp_url)
        try:
            cls = smtplib.SMTP_SSL if url.scheme == "smtps" else smtplib.SMTP
            with cls(url.hostname or "127.0.0.1", url.port or (465 if url.scheme == "smtps" else 25), timeout=5) as server:
                server.noop()
            yield "smtp", True, f"{url.hostname}:{url.port or ''} answers"
        except Exception as exc:
            yield "smtp", False, f"{url.hostname} does not answer ({type(exc).__name__}): check SMTP_URL"
    for plugin in all_plugins().values():
        for provider in plugin.providers:
            name = f"{plugin.key}: {provider.title}"
            if provider.auth_mode == "partner_key":
                from .partners import partner_urls

                urls = partner_urls(plugin)
                yield (name, bool(urls), f"{provider.title} calls WeCP at {urls[0][1].rsplit('/', 1)[0]}/… "
                       f"with a key each organization issues on its card" if urls else
                       "no partner endpoint is mounted: the plugin's partner_blueprint has no route")
                continue
            if provider.auth_mode == "pasted_key":
                yield name, True, "each organization pastes its own key; it is checked when pasted"
                continue
            base = provider.setting(cfg, "API_BASE_URL")
            if not base:
                yield name, False, f"{provider.config_prefix}_API_BASE_URL is not set"
                continue
            try:
                answer = requests.get(base, timeout=5)
                yield name, True, f"{base} answers (HTTP {answer.status_code})"
            except requests.RequestException as exc:
                yield name, False, f"{base} cannot be reached ({type(exc).__name__}): check the network or the URL"


def init_app(app) -> None:
    """Attach the hub's commands to ``app.cli`` (so ``flask --app wsgi`` and tests see them too)."""
    for command in (users, operators, api_tokens, keys, doctor):
        app.cli.add_command(command)
