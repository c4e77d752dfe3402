from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from hub.extensions import db


def test_single_head(app):
    config = app.extensions["migrate"].migrate.get_config()
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"


def test_models_and_migrations_agree(app):
    """The schema built by the migrations is exactly what the models declare (both databases)."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models drifted from migrations; run `hub db migrate`: {diff}"
