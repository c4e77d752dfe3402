"""Migrations: one history for the hub and one per plugin, each with one head, matching the models."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub import schema
from hub.extensions import db


def test_each_history_has_a_single_head(app):
    found = schema.histories(app)
    assert found[0].key == "hub"
    for history in found:
        heads = history.script().get_heads()
        assert len(heads) == 1, f"{history.key} migrations have several heads: {heads}"


def test_models_and_migrations_agree(app):
    """The schema built by the migrations is exactly what the models declare (both databases)."""
    for history in schema.histories(app):
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "compare_type": True, "version_table": history.version_table,
                "include_object": lambda obj, name, type_, reflected, compare_to, h=history:
                    _owned_by(h, obj, type_, reflected, compare_to)})
            diff = compare_metadata(context, db.metadata)
        assert diff == [], f"{history.key} models drifted from migrations; run `hub db migrate`: {diff}"


def _owned_by(history, obj, type_, reflected, compare_to):
    table = obj if type_ == "table" else getattr(obj, "table", None)
    if table is None:
        return True
    if type_ == "table" and reflected and compare_to is None:
        return False
    return history.owns(table)
