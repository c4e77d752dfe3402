"""wecp_lever_tag: tags stored with the invitation or note that asks for them

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 19:55:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('wecp_lever_tag',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('opportunity_id', sa.String(length=64), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('perform_as', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('done_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_wecp_lever_tag_connection_id_connection')),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_wecp_lever_tag_organization_id_organization')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wecp_lever_tag')),
    sa.UniqueConstraint('key', name=op.f('uq_wecp_lever_tag_key'))
    )
    with op.batch_alter_table('wecp_lever_tag', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wecp_lever_tag_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_wecp_lever_tag_status'), ['status'], unique=False)


def downgrade():
    with op.batch_alter_table('wecp_lever_tag', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wecp_lever_tag_status'))
        batch_op.drop_index(batch_op.f('ix_wecp_lever_tag_organization_id'))

    op.drop_table('wecp_lever_tag')
