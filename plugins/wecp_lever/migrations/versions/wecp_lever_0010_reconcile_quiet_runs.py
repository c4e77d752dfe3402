"""Reconciliation backs off while nothing moves: the runs in a row that found nothing

Revision ID: wecp_lever_0010
Revises: wecp_lever_0009
Create Date: 2026-12-08 02:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'wecp_lever_0010'
down_revision = 'wecp_lever_0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('wecp_lever_reconcile_cursor') as batch_op:
        batch_op.add_column(sa.Column('quiet_runs', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('wecp_lever_reconcile_cursor') as batch_op:
        batch_op.drop_column('quiet_runs')
