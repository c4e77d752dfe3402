"""Lever writes as durable work: notes and tags share the hub's life cycle; stage moves get rows

Notes: pending → running → done | failed (paused while Lever is disconnected); ``reason`` and
``test_id`` replace what was read out of the key. Tags may choose their author when written.
``wecp_lever_stage_move``: the "move candidates who pass" write, once per result.

Revision ID: wecp_lever_0006
Revises: 0005
Create Date: 2026-12-05 12:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'wecp_lever_0006'
down_revision = '0005'
branch_labels = None
depends_on = None

STATUSES = "('pending', 'running', 'paused', 'done', 'skipped', 'failed')"


def _work_columns(batch_op, with_summary=True):
    batch_op.add_column(sa.Column('due_at', sa.DateTime(), nullable=True))
    batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
    batch_op.add_column(sa.Column('outcome', sa.String(length=40), nullable=True))
    if with_summary:
        batch_op.add_column(sa.Column('summary', sa.Text(), nullable=True))


def upgrade():
    # --- notes ----------------------------------------------------------------------------------
    with op.batch_alter_table('wecp_lever_note', schema=None) as batch_op:
        _work_columns(batch_op)
        batch_op.add_column(sa.Column('reason', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('test_id', sa.Integer(), nullable=True))
        batch_op.alter_column('posted_at', new_column_name='finished_at', existing_type=sa.DateTime())
        batch_op.drop_column('attempted_at')
    conn = op.get_bind()
    op.execute("UPDATE wecp_lever_note SET due_at = created_at")
    op.execute("UPDATE wecp_lever_note SET status = CASE status WHEN 'posting' THEN 'running' "
               "WHEN 'posted' THEN 'done' ELSE status END")
    op.execute("UPDATE wecp_lever_note SET outcome = 'note_posted' WHERE status = 'done'")
    op.execute("UPDATE wecp_lever_note SET reason = 'result', test_id = "
               "(SELECT r.test_id FROM result r WHERE r.id = wecp_lever_note.result_id) "
               "WHERE result_id IS NOT NULL")
    # Notes of candidates without an email kept their test in the key: no-email:<opportunity>:<test id>.
    for note_id, key in conn.execute(sa.text("SELECT id, key FROM wecp_lever_note WHERE result_id IS NULL")).all():
        test_id = key.rsplit(":", 1)[-1]
        conn.execute(sa.text("UPDATE wecp_lever_note SET reason = 'no_email', test_id = :test WHERE id = :id"),
                     {"test": int(test_id) if test_id.isdigit() else None, "id": note_id})
    with op.batch_alter_table('wecp_lever_note', schema=None) as batch_op:
        batch_op.alter_column('due_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.alter_column('reason', existing_type=sa.String(length=20), nullable=False)
        batch_op.create_foreign_key(op.f('fk_wecp_lever_note_test_id_assessment_test'), 'assessment_test',
                                    ['test_id'], ['id'], ondelete='CASCADE')
        batch_op.create_index(op.f('ix_wecp_lever_note_work'), ['status', 'due_at'], unique=False)
        batch_op.create_check_constraint(op.f('ck_wecp_lever_note_work_status'), f"status IN {STATUSES}")

    # --- tags -----------------------------------------------------------------------------------
    with op.batch_alter_table('wecp_lever_tag', schema=None) as batch_op:
        _work_columns(batch_op)
        batch_op.add_column(sa.Column('application', sa.JSON(), nullable=True))
        batch_op.alter_column('perform_as', existing_type=sa.String(length=64), nullable=True)
        batch_op.alter_column('done_at', new_column_name='finished_at', existing_type=sa.DateTime())
    op.execute("UPDATE wecp_lever_tag SET due_at = created_at")
    op.execute("UPDATE wecp_lever_tag SET outcome = 'tagged' WHERE status = 'done'")
    with op.batch_alter_table('wecp_lever_tag', schema=None) as batch_op:
        batch_op.alter_column('due_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.drop_index(op.f('ix_wecp_lever_tag_status'))
        batch_op.create_index(op.f('ix_wecp_lever_tag_work'), ['status', 'due_at'], unique=False)
        batch_op.create_check_constraint(op.f('ck_wecp_lever_tag_work_status'), f"status IN {STATUSES}")

    # --- stage moves ----------------------------------------------------------------------------
    op.create_table('wecp_lever_stage_move',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('opportunity_id', sa.String(length=64), nullable=False),
    sa.Column('stage_id', sa.String(length=64), nullable=False),
    sa.Column('result_id', sa.String(length=36), nullable=True),
    sa.Column('perform_as', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('outcome', sa.String(length=40), nullable=True),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint(f"status IN {STATUSES}", name=op.f('ck_wecp_lever_stage_move_work_status')),
    sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_wecp_lever_stage_move_connection_id_connection')),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_wecp_lever_stage_move_organization_id_organization')),
    sa.ForeignKeyConstraint(['result_id'], ['result.id'], name=op.f('fk_wecp_lever_stage_move_result_id_result'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wecp_lever_stage_move')),
    sa.UniqueConstraint('key', name=op.f('uq_wecp_lever_stage_move_key'))
    )
    with op.batch_alter_table('wecp_lever_stage_move', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wecp_lever_stage_move_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(op.f('ix_wecp_lever_stage_move_work'), ['status', 'due_at'], unique=False)
    # Moves already made were claimed as stage changes "via advance": they are now moves, done.
    op.execute("INSERT INTO wecp_lever_stage_move (organization_id, connection_id, key, opportunity_id, "
               "stage_id, result_id, created_at, status, attempts, due_at, outcome, finished_at) "
               "SELECT s.organization_id, n.connection_id, 'advance:' || n.result_id, s.opportunity_id, "
               "s.stage_id, n.result_id, s.created_at, 'done', 1, s.created_at, 'moved', s.created_at "
               "FROM wecp_lever_stage_change s JOIN wecp_lever_note n ON s.key = 'advance:' || n.key "
               "WHERE s.via = 'advance' AND n.result_id IS NOT NULL")
    op.execute("DELETE FROM wecp_lever_stage_change WHERE via = 'advance'")


def downgrade():
    op.drop_table('wecp_lever_stage_move')
    with op.batch_alter_table('wecp_lever_tag', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_wecp_lever_tag_work_status'), type_='check')
        batch_op.drop_index(op.f('ix_wecp_lever_tag_work'))
    op.execute("UPDATE wecp_lever_tag SET status = 'pending' WHERE status NOT IN ('pending', 'done')")
    op.execute("DELETE FROM wecp_lever_tag WHERE perform_as IS NULL")
    with op.batch_alter_table('wecp_lever_tag', schema=None) as batch_op:
        batch_op.alter_column('finished_at', new_column_name='done_at', existing_type=sa.DateTime())
        batch_op.alter_column('perform_as', existing_type=sa.String(length=64), nullable=False)
        for column in ('application', 'summary', 'outcome', 'lease_until', 'due_at'):
            batch_op.drop_column(column)
        batch_op.create_index(op.f('ix_wecp_lever_tag_status'), ['status'], unique=False)
    with op.batch_alter_table('wecp_lever_note', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_wecp_lever_note_work_status'), type_='check')
        batch_op.drop_index(op.f('ix_wecp_lever_note_work'))
        batch_op.drop_constraint(op.f('fk_wecp_lever_note_test_id_assessment_test'), type_='foreignkey')
    op.execute("UPDATE wecp_lever_note SET status = CASE status WHEN 'running' THEN 'posting' "
               "WHEN 'done' THEN 'posted' ELSE status END")
    with op.batch_alter_table('wecp_lever_note', schema=None) as batch_op:
        batch_op.alter_column('finished_at', new_column_name='posted_at', existing_type=sa.DateTime())
        batch_op.add_column(sa.Column('attempted_at', sa.DateTime(), nullable=True))
        for column in ('test_id', 'reason', 'summary', 'outcome', 'lease_until', 'due_at'):
            batch_op.drop_column(column)
