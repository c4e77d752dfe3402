"""A database at the old single chain's head (Lever's tables in the hub's history, deliveries
deduplicated per plugin) upgrades to today's layout with its data, on PostgreSQL and SQLite."""
from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from alembic import command

from hub import create_app, schema
from hub.extensions import db
from sandboxes.services import PostgresDatabase
from tests.conftest import base_config

NOW = datetime(2026, 12, 1, 12, 0, 0)


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(request, postgres_db, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    database = PostgresDatabase(admin_url=postgres_db.admin_url)
    yield database.url
    database.drop()


def _filler(column: sa.Column):
    kind = column.type.python_type if not isinstance(column.type, sa.JSON) else dict
    return {int: 1, str: "x", datetime: NOW, dict: {}, bool: False}.get(kind, "x")


def insert(conn, table_name: str, **values) -> None:
    """A row with the given values; other required columns get a filler of their type."""
    table = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
    for column in table.columns:
        if column.name not in values and not column.nullable and column.server_default is None \
                and not (column.primary_key and column.autoincrement is True):
            values[column.name] = _filler(column)
    conn.execute(table.insert().values(**values))


def old_layout(app) -> None:
    """The schema the old single chain left (hub 0001-0003, Lever 0004-0005, one version table),
    with rows in the statuses of that time."""
    command.upgrade(schema.history("hub", app).config(), "0003")
    command.upgrade(schema.history("wecp_lever", app).config(), "0005")
    with db.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version_wecp_lever"))
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
        for org in (1, 2):
            insert(conn, "organization", id=org, name=f"Org {org}")
            insert(conn, "connection", id=f"conn-{org}", organization_id=org, plugin_key="wecp_lever",
                   provider="lever", endpoint_id=f"endpoint-{org}")
        insert(conn, "assessment_test", id=1, organization_id=1, title="Python")
        insert(conn, "webhook_delivery", id=1, connection_id="conn-1", plugin_key="wecp_lever", source="lever",
               event="candidateStageChange", dedupe_key="token-1", payload={}, received_at=NOW,
               status="queued", enqueued_at=NOW, attempts=0)
        insert(conn, "webhook_delivery", id=2, connection_id="conn-1", plugin_key="wecp_lever", source="lever",
               event="candidateStageChange", dedupe_key="token-2", payload={}, received_at=NOW,
               status="done", attempts=1, processed_at=NOW, result="invited")
        insert(conn, "wecp_lever_note", id=1, organization_id=1, connection_id="conn-1",
               key="no-email:opp-1:1", opportunity_id="opp-1", status="posted", created_at=NOW)


def test_the_old_single_chain_upgrades_to_a_history_per_plugin_with_its_data(empty_database, redis_server):
    app = create_app(base_config(empty_database, redis_server.url, HUB_PLUGINS=["plugins.wecp_lever"]))
    with app.app_context():
        old_layout(app)
        schema.upgrade(app)
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == \
                schema.history("hub", app).script().get_current_head()
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version_wecp_lever")).scalar() == \
                schema.history("wecp_lever", app).script().get_current_head()
            deliveries = conn.execute(sa.text(
                "SELECT id, status, due_at, outcome, summary FROM webhook_delivery ORDER BY id")).all()
            assert [(d.status, d.outcome, d.summary) for d in deliveries] == \
                [("pending", None, None), ("done", "done", "invited")]
            assert all(d.due_at is not None for d in deliveries)
            note = conn.execute(sa.text("SELECT status, reason, test_id, outcome FROM wecp_lever_note")).one()
            assert tuple(note) == ("done", "no_email", 1, "note_posted")
        # Deduplication is per connection now: another organization's delivery with the same
        # provider token is stored beside the first.
        with db.engine.begin() as conn:
            insert(conn, "webhook_delivery", id=3, connection_id="conn-2", plugin_key="wecp_lever",
                   source="lever", event="candidateStageChange", dedupe_key="token-1", payload={},
                   received_at=NOW, status="pending", attempts=0, due_at=NOW)
            with pytest.raises(sa.exc.IntegrityError):
                with conn.begin_nested():
                    insert(conn, "webhook_delivery", id=4, connection_id="conn-1", plugin_key="wecp_lever",
                           source="lever", event="candidateStageChange", dedupe_key="token-1", payload={},
                           received_at=NOW, status="pending", attempts=0, due_at=NOW)
        db.session.remove()
        db.engine.dispose()


def test_stage_changes_take_their_posting_s_names_on_upgrade(empty_database, redis_server):
    """wecp_lever_0008: a move that kept its posting takes that posting's names from its link; one
    without a posting (older) keeps none and the activity log falls back to an unambiguous link."""
    app = create_app(base_config(empty_database, redis_server.url, HUB_PLUGINS=["plugins.wecp_lever"]))
    with app.app_context():
        command.upgrade(schema.history("hub", app).config(), "heads")
        command.upgrade(schema.history("wecp_lever", app).config(), "wecp_lever_0007")
        with db.engine.begin() as conn:
            insert(conn, "organization", id=1, name="Org 1")
            insert(conn, "assessment_test", id=1, organization_id=1, title="Python")
            for i, (posting, text) in enumerate([("p-back", "Backend Engineer"), ("p-front", "Frontend Engineer")], 1):
                insert(conn, "wecp_lever_posting_link", id=i, organization_id=1, test_id=1, posting_id=posting,
                       posting_text=text, stage_id="s-1", stage_text="Assessment", linked_at=NOW)
            insert(conn, "wecp_lever_stage_change", id=1, organization_id=1, key="k1", opportunity_id="o-1",
                   stage_id="s-1", posting_id="p-back", test_id=1, via="webhook", created_at=NOW)
            insert(conn, "wecp_lever_stage_change", id=2, organization_id=1, key="k2", opportunity_id="o-2",
                   stage_id="s-1", posting_id=None, test_id=1, via="webhook", created_at=NOW)
        schema.upgrade(app)
        with db.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, posting_text, stage_text FROM wecp_lever_stage_change "
                                        "ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "Backend Engineer", "Assessment"), (2, None, None)]
        db.session.remove()
        db.engine.dispose()


def test_lever_activity_moves_into_the_hubs_log_line_for_line(empty_database, redis_server):
    """wecp_lever_0009 (#41, 4): every line of wecp_lever_activity is in the hub's ``activity``,
    with its id, time, candidate and references; new lines continue after them."""
    from hub.activity import record

    app = create_app(base_config(empty_database, redis_server.url, HUB_PLUGINS=["plugins.wecp_lever"]))
    with app.app_context():
        command.upgrade(schema.history("hub", app).config(), "heads")
        command.upgrade(schema.history("wecp_lever", app).config(), "wecp_lever_0008")
        with db.engine.begin() as conn:
            insert(conn, "organization", id=1, name="Org 1")
            insert(conn, "wecp_lever_activity", id=7, organization_id=1, opportunity_id="opp-1",
                   candidate_name="Ada Lovelace", kind="invitation", status="ok", message="Invited.",
                   invitation_id="inv-1", created_at=NOW)
            insert(conn, "wecp_lever_activity", id=9, organization_id=1, opportunity_id="opp-1",
                   candidate_name=None, kind="note", status="failed", message="Lever refused.",
                   result_id="res-1", delivery_id=3, created_at=NOW)
        schema.upgrade(app)
        with db.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT id, organization_id, plugin_key, subject_ref, subject_name, kind, status, message, "
                "delivery_id, invitation_id, result_id, created_at FROM activity ORDER BY id")).all()
            assert not sa.inspect(conn).has_table("wecp_lever_activity")
        assert [tuple(r)[:-1] for r in rows] == [
            (7, 1, "wecp_lever", "opp-1", "Ada Lovelace", "invitation", "ok", "Invited.", None, "inv-1", None),
            (9, 1, "wecp_lever", "opp-1", None, "note", "failed", "Lever refused.", 3, None, "res-1")]
        # SQLite answers raw SQL with the stored text, PostgreSQL with a datetime: the same time.
        assert {str(r.created_at)[:19] for r in rows} == {str(NOW)}
        line = record("wecp_lever", "tag", "ok", "Tagged.", organization_id=1, subject_ref="opp-1")
        db.session.commit()
        assert line.id > 9
        db.session.remove()
        db.engine.dispose()
