"""partner_example_push: the partner example's durable push

Revision ID: partner_example_0001
Revises:
Create Date: 2026-12-07 18:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'partner_example_0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('partner_example_push',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('ref', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('outcome', sa.String(length=40), nullable=True),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'running', 'paused', 'done', 'skipped', 'failed')",
                       name=op.f('ck_partner_example_push_work_status')),
    sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_partner_example_push_connection_id_connection')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_example_push')),
    sa.UniqueConstraint('connection_id', 'ref', name=op.f('uq_partner_example_push_connection_id_ref'))
    )
    with op.batch_alter_table('partner_example_push', schema=None) as batch_op:
        batch_op.create_index('ix_partner_example_push_work', ['status', 'due_at'], unique=False)


def downgrade():
    op.drop_table('partner_example_push')
