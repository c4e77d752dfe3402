"""The database schema: one Alembic history for the hub and one for each plugin.

Each history has its own folder of revisions and its own version table: the hub's in
``migrations/versions`` (table ``alembic_version``), a plugin's in ``plugins/<key>/migrations/
versions`` (table ``alembic_version_<key>``). So a plugin brings its tables with it, and a hub
without it neither creates nor drops them. ``hub db upgrade`` upgrades the hub, then every loaded
plugin (their tables refer to the hub's). ``hub db migrate`` generates a revision for one history
and compares only the tables that history owns: the hub's models, or those of the plugin's
package (prefixed with its key). Tables of plugins not loaded are never proposed for dropping.

A database from before the split kept every revision in ``alembic_version``; ``upgrade`` moves a
revision that belongs to a plugin's history into that plugin's table first (``_adopt``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import click
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from flask import current_app
from flask.cli import with_appcontext

from .extensions import db
from .registry import all_plugins, plugin_package

log = logging.getLogger("hub.schema")

#: The hub's migration environment (env.py, the revision template) and its own revisions.
MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")

HUB = "hub"


@dataclass(frozen=True)
class History:
    """One Alembic history: the hub's or one plugin's."""

    #: ``hub`` or the plugin key.
    key: str
    #: Folder of its revision files.
    versions_dir: str
    #: Module prefix of the models whose tables it owns (``hub.``, ``plugins.<key>.``).
    module_prefix: str

    @property
    def version_table(self) -> str:
        return "alembic_version" if self.key == HUB else f"alembic_version_{self.key}"

    def owns(self, table: sa.Table) -> bool:
        return table.name in owned_tables(self)

    def config(self) -> Config:
        cfg = Config(os.path.join(MIGRATIONS_DIR, "alembic.ini"))
        cfg.set_main_option("script_location", MIGRATIONS_DIR)
        cfg.set_main_option("version_locations", self.versions_dir)
        cfg.attributes["hub_history"] = self
        return cfg

    def script(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self.config())


def owned_tables(history: History) -> set[str]:
    """Names of the tables declared by models of the history's modules."""
    return {mapper.local_table.name for mapper in db.Model.registry.mappers
            if mapper.class_.__module__.startswith(history.module_prefix)}


def histories(app=None) -> list[History]:
    """The hub's history, then each loaded plugin's that has one (in HUB_PLUGINS order)."""
    found = [History(HUB, os.path.join(MIGRATIONS_DIR, "versions"), "hub.")]
    for plugin in all_plugins(app).values():
        package = plugin_package(plugin.key, app)
        folder = os.path.join(os.path.dirname(package.__file__), "migrations", "versions")
        if os.path.isdir(folder):
            found.append(History(plugin.key, folder, package.__name__ + "."))
    return found


def history(key: str, app=None) -> History:
    for h in histories(app):
        if h.key == key:
            return h
    raise click.ClickException(f"no migration history {key!r}: the hub, or a loaded plugin with "
                               f"a migrations/versions folder")


def upgrade(app=None) -> None:
    """Bring the hub's tables, then every loaded plugin's, to their newest revision."""
    found = histories(app)
    _adopt(found)
    for h in found:
        command.upgrade(h.config(), "head")


def _adopt(found: list[History]) -> None:
    """Move revisions of plugin histories out of the hub's version table (the old single chain).

    The hub's table then holds the newest hub revision below them: the split kept every hub
    revision that came before the plugin's in the old chain.
    """
    inspector = sa.inspect(db.engine)
    if "alembic_version" not in inspector.get_table_names():
        return
    hub_script = found[0].script()
    with db.engine.begin() as conn:
        current = [r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
        # (get_revision raises, rather than answering None, for a revision it does not know.)
        strangers = [rev for rev in current if not _known(hub_script, rev)]
        if not strangers:
            return
        for h in found[1:]:
            script = h.script()
            mine = [rev for rev in strangers if _known(script, rev)]
            if not mine:
                continue
            conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {h.version_table} "
                                 f"(version_num VARCHAR(32) NOT NULL, "
                                 f"CONSTRAINT {h.version_table}_pkc PRIMARY KEY (version_num))"))
            for rev in mine:
                conn.execute(sa.text(f"INSERT INTO {h.version_table} (version_num) VALUES (:rev)"),
                             {"rev": rev})
                conn.execute(sa.text("DELETE FROM alembic_version WHERE version_num = :rev"), {"rev": rev})
                strangers.remove(rev)
                log.info("hub.schema.adopted revision=%s history=%s", rev, h.key)
        if not conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar():
            # The old chain ran the hub's revisions first: its newest one below the plugins'.
            base = _newest_legacy_hub_revision(hub_script)
            conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES (:rev)"), {"rev": base})
        if strangers:
            raise click.ClickException(f"the database is at revision(s) {', '.join(strangers)}, which "
                                       f"no loaded history knows: load the plugin they belong to")


#: The newest hub revision of the old single chain (before plugins had histories of their own).
LEGACY_HUB_HEAD = "0003"


def _newest_legacy_hub_revision(script: ScriptDirectory) -> str:
    return LEGACY_HUB_HEAD if script.get_revision(LEGACY_HUB_HEAD) else script.get_current_head()


def _known(script: ScriptDirectory, rev: str) -> bool:
    try:
        return script.get_revision(rev) is not None
    except Exception:
        return False


# --- hub db … ---------------------------------------------------------------------------------

@click.group("db")
def db_group():
    """The database schema of the hub and its plugins."""


@db_group.command("upgrade")
@with_appcontext
def upgrade_command():
    """Upgrade the hub's tables, then every loaded plugin's, to their newest revision."""
    upgrade(current_app)
    click.echo("upgraded: " + ", ".join(h.key for h in histories(current_app)))


@db_group.command("migrate")
@click.option("--plugin", "key", default=HUB, show_default=True,
              help="Whose tables: the hub's, or one loaded plugin's (its key).")
@click.option("-m", "--message", required=True, help="What the revision changes.")
@with_appcontext
def migrate_command(key, message):
    """Generate a revision from the difference between one history's models and the database."""
    h = history(key, current_app)
    cfg = h.config()
    cfg.attributes["autogenerate"] = True
    script = command.revision(cfg, message=message, autogenerate=True)
    if script is None:
        click.echo("no changes in the schema")
    else:
        click.echo(f"wrote {os.path.relpath(script.path)}")


@db_group.command("current")
@with_appcontext
def current_command():
    """The revision the database is at, per history."""
    for h in histories(current_app):
        command.current(h.config())


@db_group.command("heads")
@with_appcontext
def heads_command():
    """The newest revision of each history."""
    for h in histories(current_app):
        click.echo(f"{h.key}: {', '.join(h.script().get_heads()) or '(none)'}")


@db_group.command("downgrade")
@click.option("--plugin", "key", default=HUB, show_default=True)
@click.argument("revision")
@with_appcontext
def downgrade_command(key, revision):
    """Downgrade one history to REVISION (``base`` removes its tables)."""
    command.downgrade(history(key, current_app).config(), revision)


def init_app(app) -> None:
    app.cli.add_command(db_group)
