"""Invitations can be cancelled (withdrawn before the candidate started); found by source ref

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 20:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

OLD = "status IN ('invited', 'started', 'completed', 'expired')"
NEW = "status IN ('invited', 'started', 'completed', 'expired', 'cancelled')"


def upgrade():
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancelled_at', sa.DateTime(), nullable=True))
        batch_op.drop_constraint(batch_op.f('ck_invitation_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_invitation_status'), NEW)
        batch_op.create_index('ix_invitation_source_ref', ['source', 'source_ref'], unique=False)


def downgrade():
    op.execute("UPDATE invitation SET status = 'expired', expired_at = cancelled_at WHERE status = 'cancelled'")
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.drop_index('ix_invitation_source_ref')
        batch_op.drop_constraint(batch_op.f('ck_invitation_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_invitation_status'), OLD)
        batch_op.drop_column('cancelled_at')
