"""The ``hub`` command group: database, users, API tokens, keys (plugins add their own)."""
from __future__ import annotations

import os
import shlex
from pathlib import Path

import click
from flask.cli import FlaskGroup

#: The file ``./run demo`` writes with its settings, in the hub's instance folder, so that ``hub``
#: run beside a demo reaches the demo's database, Redis and sandbox (``sandboxes.demo``).
DEMO_SETTINGS = "demo.env"


def demo_settings_path() -> Path:
    """``HUB_DEMO_SETTINGS``, or ``demo.env`` in the hub's instance folder."""
    if os.environ.get("HUB_DEMO_SETTINGS"):
        return Path(os.environ["HUB_DEMO_SETTINGS"])
    from flask import Flask

    return Path(Flask("hub").instance_path) / DEMO_SETTINGS


def read_settings(path: Path) -> dict[str, str]:
    """``export NAME='value'`` lines (what the demo writes, and what a shell can ``source``)."""
    settings = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            words = words[1:]
        if len(words) == 1 and "=" in words[0]:
            name, _, value = words[0].partition("=")
            settings[name] = value
    return settings


def _demo_settings() -> dict[str, str]:
    """The running demo's settings, when ``hub`` is used beside it: in development, with no
    database named in the environment. The environment always wins."""
    if os.environ.get("DATABASE_URL") or os.environ.get("HUB_ENV", "development").strip().lower() == "production":
        return {}
    path = demo_settings_path()
    if not path.is_file():
        return {}
    settings = read_settings(path)
    click.echo(f"hub: using the demo's settings ({path}); set DATABASE_URL to use another hub", err=True)
    return {k: v for k, v in settings.items() if k not in os.environ}


def _create_app():
    from . import create_app

    os.environ.update(_demo_settings())  # plugins read their settings from the environment too
    return create_app()


def _missing_tables(exc: Exception) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


class HubGroup(FlaskGroup):
    """Flask's command group, listing the hub's own commands and options only. Flask's
    development commands (run, shell, routes) and options (--app, --env-file, --debug) still
    work; ``hub --help`` does not list them."""

    FLASK_COMMANDS = ("run", "shell", "routes")
    FLASK_OPTIONS = ("env_file", "app", "debug")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for param in self.params:
            if param.name in self.FLASK_OPTIONS:
                param.hidden = True

    def list_commands(self, ctx):
        return [name for name in super().list_commands(ctx) if name not in self.FLASK_COMMANDS]

    def invoke(self, ctx):
        """A database without the hub's tables is a message saying what to run, not a traceback."""
        from sqlalchemy.exc import OperationalError, ProgrammingError

        try:
            return super().invoke(ctx)
        except (OperationalError, ProgrammingError) as exc:
            if not _missing_tables(exc):
                raise
            from flask.cli import ScriptInfo
            from sqlalchemy.engine import make_url

            app = ctx.ensure_object(ScriptInfo).load_app()
            where = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).render_as_string(hide_password=True)
            raise click.ClickException(f"{where} has no hub tables yet: run `hub db upgrade` first "
                                       "(or set DATABASE_URL to the hub's database)") from None


@click.group(cls=HubGroup, create_app=_create_app, add_version_option=False,
             load_dotenv=False, set_debug_flag=False)
def main():
    """WeCP Integration Hub: the service between WeCP and the applicant tracking systems.

    `hub doctor` checks that everything it needs answers; each command has its own --help.
    """


if __name__ == "__main__":
    main()
