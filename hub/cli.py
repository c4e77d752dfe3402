"""The ``hub`` command group: database, users, API tokens, keys (plugins add their own)."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from .extensions import db


def _create_app():
    from . import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False,
             load_dotenv=False, set_debug_flag=False)
def main():
    """WeCP Integration Hub."""


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
@with_appcontext
def api_tokens_create(email, name):
    """Create a token and print it once; only its hash is kept."""
    from .models import ApiToken, User

    user = db.session.scalar(db.select(User).filter_by(email=email.strip().lower()))
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    token, plaintext = ApiToken.issue(user, name)
    db.session.add(token)
    db.session.commit()
    click.echo(plaintext)


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

    changed = 0
    for model, field in ENCRYPTED_FIELDS:
        for row in db.session.scalars(db.select(model).where(
                getattr(model, field.column).is_not(None))):
            changed += field.rotate(row)
    db.session.commit()
    click.echo(f"re-encrypted {changed} secret(s) under key 1 of {len(current_app.config['HUB_ENCRYPTION_KEYS'])}")


def init_app(app) -> None:
    """Attach the hub's commands to ``app.cli`` (so ``flask --app wsgi`` and tests see them too)."""
    for command in (users, operators, api_tokens, keys):
        app.cli.add_command(command)


if __name__ == "__main__":
    main()
