"""wecp_greenhouse tables: the tests Greenhouse sent (interviews) and the completion PATCHes

Revision ID: wecp_greenhouse_0001
Revises: (the first revision of the wecp_greenhouse history; needs the hub at 0013)
Create Date: 2026-12-07 19:48:48.534911

"""
import sqlalchemy as sa
from alembic import op

revision = 'wecp_greenhouse_0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('wecp_greenhouse_interview',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('dedupe_key', sa.String(length=64), nullable=False),
    sa.Column('test_id', sa.Integer(), nullable=False),
    sa.Column('invitation_id', sa.String(length=36), nullable=True),
    sa.Column('result_id', sa.String(length=36), nullable=True),
    sa.Column('callback_url', sa.Text(), nullable=True),
    sa.Column('candidate_name', sa.String(length=300), nullable=False),
    sa.Column('candidate_email', sa.String(length=320), nullable=False),
    sa.Column('profile_url', sa.Text(), nullable=True),
    sa.Column('application_id', sa.BigInteger(), nullable=True),
    sa.Column('candidate_id', sa.BigInteger(), nullable=True),
    sa.Column('sent_by', sa.String(length=320), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_wecp_greenhouse_interview_connection_id_connection')),
    sa.ForeignKeyConstraint(['invitation_id'], ['invitation.id'], name=op.f('fk_wecp_greenhouse_interview_invitation_id_invitation')),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_wecp_greenhouse_interview_organization_id_organization')),
    sa.ForeignKeyConstraint(['test_id'], ['assessment_test.id'], name=op.f('fk_wecp_greenhouse_interview_test_id_assessment_test'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wecp_greenhouse_interview')),
    sa.UniqueConstraint('organization_id', 'dedupe_key', name=op.f('uq_wecp_greenhouse_interview_organization_id_dedupe_key'))
    )
    with op.batch_alter_table('wecp_greenhouse_interview', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wecp_greenhouse_interview_connection_id'), ['connection_id'], unique=False)

    op.create_table('wecp_greenhouse_completion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('interview_id', sa.String(length=36), nullable=False),
    sa.Column('result_id', sa.String(length=36), nullable=False),
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
    sa.CheckConstraint("status IN ('pending', 'running', 'paused', 'done', 'skipped', 'failed')", name=op.f('ck_wecp_greenhouse_completion_work_status')),
    sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_wecp_greenhouse_completion_connection_id_connection')),
    sa.ForeignKeyConstraint(['interview_id'], ['wecp_greenhouse_interview.id'], name=op.f('fk_wecp_greenhouse_completion_interview_id_wecp_greenhouse_interview')),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_wecp_greenhouse_completion_organization_id_organization')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wecp_greenhouse_completion')),
    sa.UniqueConstraint('key', name=op.f('uq_wecp_greenhouse_completion_key'))
    )
    with op.batch_alter_table('wecp_greenhouse_completion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wecp_greenhouse_completion_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_wecp_greenhouse_completion_interview_id'), ['interview_id'], unique=False)
        batch_op.create_index('ix_wecp_greenhouse_completion_work', ['status', 'due_at'], unique=False)



def downgrade():
    with op.batch_alter_table('wecp_greenhouse_completion', schema=None) as batch_op:
        batch_op.drop_index('ix_wecp_greenhouse_completion_work')
        batch_op.drop_index(batch_op.f('ix_wecp_greenhouse_completion_interview_id'))
        batch_op.drop_index(batch_op.f('ix_wecp_greenhouse_completion_connection_id'))

    op.drop_table('wecp_greenhouse_completion')
    with op.batch_alter_table('wecp_greenhouse_interview', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wecp_greenhouse_interview_connection_id'))

    op.drop_table('wecp_greenhouse_interview')
