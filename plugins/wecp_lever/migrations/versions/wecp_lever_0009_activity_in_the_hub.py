"""wecp_lever_activity moves into the hub's activity log (table ``activity``, hub revision 0012,
which the hub's history applies before any plugin's): every line kept, with its id and time

Revision ID: wecp_lever_0009
Revises: wecp_lever_0008
Create Date: 2026-12-07 18:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'wecp_lever_0009'
down_revision = 'wecp_lever_0008'
branch_labels = None
depends_on = None

COLUMNS = ('id', 'organization_id', 'kind', 'status', 'message', 'delivery_id', 'invitation_id',
           'result_id', 'created_at')


def _tables():
    hub = sa.table('activity', *(sa.column(c) for c in (*COLUMNS, 'plugin_key', 'subject_ref', 'subject_name')))
    lever = sa.table('wecp_lever_activity', *(sa.column(c) for c in (*COLUMNS, 'opportunity_id', 'candidate_name')))
    return hub, lever


def upgrade():
    hub, lever = _tables()
    op.execute(hub.insert().from_select(
        [*COLUMNS, 'plugin_key', 'subject_ref', 'subject_name'],
        sa.select(*(lever.c[c] for c in COLUMNS), sa.literal('wecp_lever'), lever.c.opportunity_id,
                  lever.c.candidate_name)))
    if op.get_bind().dialect.name == 'postgresql':
        # Ids were copied: new lines continue after the highest.
        op.execute("SELECT setval(pg_get_serial_sequence('activity', 'id'), "
                   "GREATEST((SELECT COALESCE(MAX(id), 0) FROM activity), 1))")
    op.drop_table('wecp_lever_activity')


def downgrade():
    op.create_table('wecp_lever_activity',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('opportunity_id', sa.String(length=64), nullable=True),
    sa.Column('candidate_name', sa.String(length=300), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('delivery_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('invitation_id', sa.String(length=36), nullable=True),
    sa.Column('result_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_wecp_lever_activity_organization_id_organization')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wecp_lever_activity'))
    )
    with op.batch_alter_table('wecp_lever_activity', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wecp_lever_activity_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_wecp_lever_activity_opportunity_id'), ['opportunity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_wecp_lever_activity_organization_id'), ['organization_id'], unique=False)
    hub, lever = _tables()
    op.execute(lever.insert().from_select(
        [*COLUMNS, 'opportunity_id', 'candidate_name'],
        sa.select(*(hub.c[c] for c in COLUMNS), hub.c.subject_ref, hub.c.subject_name)
        .where(hub.c.plugin_key == 'wecp_lever')))
    op.execute(hub.delete().where(hub.c.plugin_key == 'wecp_lever'))
