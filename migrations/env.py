"""The Alembic environment of every history: the hub's and each plugin's (see ``hub.schema``).

The history being run comes in ``config.attributes["hub_history"]``; it names the version table
and which tables it owns, so autogenerate compares those tables only and never proposes to drop
a table that belongs to another history (or to a plugin not loaded now).
"""
import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

from hub.extensions import db

config = context.config

# The hub configures logging itself (with secret redaction); only configure when run bare.
if not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

history = config.attributes["hub_history"]


def include_object(obj, name, type_, reflected, compare_to):
    table = obj if type_ == "table" else getattr(obj, "table", None)
    if table is None:
        return True
    if type_ == "table" and reflected and compare_to is None:
        return False  # only in the database: another history's (or an unloaded plugin's) table
    return history.owns(table)


def process_revision_directives(context_, revision, directives):
    # No empty revision when nothing changed.
    if getattr(config.cmd_opts, "autogenerate", False) or config.attributes.get("autogenerate"):
        script = directives[0]
        if script.upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")


def run_migrations_online():
    with db.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=db.metadata,
            version_table=history.version_table,
            include_object=include_object,
            process_revision_directives=process_revision_directives,
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run `hub db upgrade` against the database")
run_migrations_online()
assert current_app  # the hub's app context is required (hub db …)
