"""wecp_greenhouse: the notes and moves written through Harvest (durable work), and the job Harvest names

Revision ID: wecp_greenhouse_0002
Revises: wecp_greenhouse_0001
Create Date: 2026-12-07 22:42:22.581481

"""
import sqlalchemy as sa
from alembic import op

revision = 'wecp_greenhouse_0002'
down_revision = 'wecp_greenhouse_0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('wecp_greenhouse_harvest_write',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('interview_id', sa.String(length=36), nullable=False),
    sa.Column('result_id', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=10), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('outcome', sa.String(length=40), nullable=True),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'running', 'paused', 'done', 'skipped', 'failed')", name=op.f('ck_wecp_greenhouse_harvest_write_work_status')),
    sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_wecp_greenhouse_harvest_write_connection_id_connection')),
    sa.ForeignKeyConstraint(['interview_id'], ['wecp_greenhouse_interview.id'], name=op.f('fk_wecp_greenhouse_harvest_write_interview_id_wecp_greenhouse_interview')),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_wecp_greenhouse_harvest_write_organization_id_organization')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wecp_greenhouse_harvest_write')),
    sa.UniqueConstraint('key', name=op.f('uq_wecp_greenhouse_harvest_write_key'))
    )
    with op.batch_alter_table('wecp_greenhouse_interview', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_title', sa.String(length=200), nullable=True))
    with op.batch_alter_table('wecp_greenhouse_harvest_write', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wecp_greenhouse_harvest_write_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_wecp_greenhouse_harvest_write_interview_id'), ['interview_id'], unique=False)
        batch_op.create_index('ix_wecp_greenhouse_harvest_write_work', ['status', 'due_at'], unique=False)



def downgrade():
    with op.batch_alter_table('wecp_greenhouse_harvest_write', schema=None) as batch_op:
        batch_op.drop_index('ix_wecp_greenhouse_harvest_write_work')
        batch_op.drop_index(batch_op.f('ix_wecp_greenhouse_harvest_write_interview_id'))
        batch_op.drop_index(batch_op.f('ix_wecp_greenhouse_harvest_write_connection_id'))

    op.drop_table('wecp_greenhouse_harvest_write')
    with op.batch_alter_table('wecp_greenhouse_interview', schema=None) as batch_op:
        batch_op.drop_column('job_title')
