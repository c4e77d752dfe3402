"""tiny_example_echo: the tiny plugin's durable work

Revision ID: tiny_example_0001
Revises:
Create Date: 2026-12-05 12:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'tiny_example_0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('tiny_example_echo',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=True),
    sa.Column('behaviour', sa.String(length=50), nullable=False),
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
                       name=op.f('ck_tiny_example_echo_work_status')),
    sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_tiny_example_echo_connection_id_connection')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tiny_example_echo')),
    sa.UniqueConstraint('key', name=op.f('uq_tiny_example_echo_key'))
    )
    with op.batch_alter_table('tiny_example_echo', schema=None) as batch_op:
        batch_op.create_index('ix_tiny_example_echo_work', ['status', 'due_at'], unique=False)


def downgrade():
    op.drop_table('tiny_example_echo')
