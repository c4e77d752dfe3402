"""The activity log, in the hub: every plugin's lines in one table

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 18:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'activity',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('plugin_key', sa.String(length=64), nullable=False),
        sa.Column('subject_ref', sa.String(length=64), nullable=True),
        sa.Column('subject_name', sa.String(length=300), nullable=True),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('invitation_id', sa.String(length=36), nullable=True),
        sa.Column('result_id', sa.String(length=36), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_activity_organization_id_organization')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_activity')),
    )
    with op.batch_alter_table('activity', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_activity_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_activity_organization_plugin', ['organization_id', 'plugin_key', 'id'], unique=False)
        batch_op.create_index('ix_activity_subject', ['organization_id', 'subject_ref'], unique=False)


def downgrade():
    op.drop_table('activity')
