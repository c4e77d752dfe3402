"""wecp_lever_webhook: the connection's Lever webhooks besides the stage-change one (archive);
the posting a stage change was for

Revision ID: wecp_lever_0007
Revises: wecp_lever_0006
Create Date: 2026-12-06 20:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'wecp_lever_0007'
down_revision = 'wecp_lever_0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('wecp_lever_webhook',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('webhook_id', sa.String(length=200), nullable=False),
    sa.Column('secret_ciphertext', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_wecp_lever_webhook_connection_id_connection'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wecp_lever_webhook')),
    sa.UniqueConstraint('connection_id', 'event', name=op.f('uq_wecp_lever_webhook_connection_id_event'))
    )
    with op.batch_alter_table('wecp_lever_stage_change', schema=None) as batch_op:
        batch_op.add_column(sa.Column('posting_id', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('wecp_lever_stage_change', schema=None) as batch_op:
        batch_op.drop_column('posting_id')
    op.drop_table('wecp_lever_webhook')
