"""Partner keys: keys WeCP issues for a connection, presented by the provider when it calls WeCP

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 17:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'partner_key',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('connection_id', sa.String(length=36), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('hint', sa.String(length=8), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.Column('last_used_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], ),
        sa.ForeignKeyConstraint(['created_by_id'], ['user_account.id'], ),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key_hash'),
    )
    with op.batch_alter_table('partner_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_partner_key_connection_id'), ['connection_id'], unique=False)


def downgrade():
    with op.batch_alter_table('partner_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_partner_key_connection_id'))
    op.drop_table('partner_key')
