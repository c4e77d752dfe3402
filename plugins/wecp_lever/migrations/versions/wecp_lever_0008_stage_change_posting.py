"""wecp_lever_stage_change: the posting's and stage's names as they were when the candidate moved,
so the activity log names the posting a candidate was invited from even after an unlink

Revision ID: wecp_lever_0008
Revises: wecp_lever_0007
Create Date: 2026-12-07 15:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'wecp_lever_0008'
down_revision = 'wecp_lever_0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('wecp_lever_stage_change', schema=None) as batch_op:
        batch_op.add_column(sa.Column('posting_text', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('stage_text', sa.String(length=200), nullable=True))
    # Rows that know their posting take the names from the link still in place, if any.
    change = sa.table('wecp_lever_stage_change', sa.column('posting_id'), sa.column('test_id'),
                      sa.column('posting_text'), sa.column('stage_text'))
    link = sa.table('wecp_lever_posting_link', sa.column('posting_id'), sa.column('test_id'),
                    sa.column('posting_text'), sa.column('stage_text'))
    for column in ('posting_text', 'stage_text'):
        op.execute(change.update().where(change.c.posting_id.is_not(None)).values({
            column: sa.select(link.c[column]).where(link.c.posting_id == change.c.posting_id,
                                                    link.c.test_id == change.c.test_id).scalar_subquery()}))


def downgrade():
    with op.batch_alter_table('wecp_lever_stage_change', schema=None) as batch_op:
        batch_op.drop_column('stage_text')
        batch_op.drop_column('posting_text')
