"""Who is asking: the job an invitation is for; each organization's sender name and Reply-To,
kept with each email

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 21:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_title', sa.String(length=300), nullable=True))
    with op.batch_alter_table('organization', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_sender_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('email_reply_to', sa.String(length=320), nullable=True))
    with op.batch_alter_table('outbound_email', schema=None) as batch_op:
        batch_op.add_column(sa.Column('from_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('reply_to', sa.String(length=320), nullable=True))


def downgrade():
    with op.batch_alter_table('outbound_email', schema=None) as batch_op:
        batch_op.drop_column('reply_to')
        batch_op.drop_column('from_name')
    with op.batch_alter_table('organization', schema=None) as batch_op:
        batch_op.drop_column('email_reply_to')
        batch_op.drop_column('email_sender_name')
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.drop_column('job_title')
