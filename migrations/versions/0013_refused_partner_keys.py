"""Calls refused with a revoked or expired partner key, counted on the key for the admin's card

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 19:50:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('partner_key', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refused_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('refused_count', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('partner_key', schema=None) as batch_op:
        batch_op.drop_column('refused_count')
        batch_op.drop_column('refused_at')
