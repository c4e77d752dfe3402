"""Durable work: webhook deliveries and outbound emails share one life cycle (hub.outbox)

Statuses become pending → running → done | skipped | failed (paused while the connection is
unusable); both tables get a lease, a due time, the outcome's code and words, and the sweeper's
index. Webhook deduplication is scoped to the connection.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-05 12:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0003'
branch_labels = None
depends_on = None

STATUSES = "('pending', 'running', 'paused', 'done', 'skipped', 'failed')"


def upgrade():
    # --- webhook_delivery ---------------------------------------------------------------------
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('outcome', sa.String(length=40), nullable=True))
        batch_op.alter_column('result', new_column_name='summary', existing_type=sa.Text())
        batch_op.alter_column('processed_at', new_column_name='finished_at', existing_type=sa.DateTime())
    op.execute("UPDATE webhook_delivery SET due_at = COALESCE(enqueued_at, received_at)")
    op.execute("UPDATE webhook_delivery SET status = 'pending' WHERE status IN ('received', 'queued')")
    op.execute("UPDATE webhook_delivery SET outcome = status WHERE status IN ('done', 'skipped', 'failed')")
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.alter_column('due_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.drop_column('enqueued_at')
        batch_op.drop_index(op.f('ix_webhook_delivery_status'))
        batch_op.create_index(op.f('ix_webhook_delivery_work'), ['status', 'due_at'], unique=False)
        batch_op.create_check_constraint(op.f('ck_webhook_delivery_work_status'), f"status IN {STATUSES}")
        batch_op.drop_constraint(op.f('uq_webhook_delivery_plugin_key_dedupe_key'), type_='unique')
        batch_op.create_unique_constraint(op.f('uq_webhook_delivery_connection_id_dedupe_key'),
                                          ['connection_id', 'dedupe_key'])

    # --- outbound_email -----------------------------------------------------------------------
    with op.batch_alter_table('outbound_email', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_outbound_email_status'), type_='check')
        batch_op.add_column(sa.Column('due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('outcome', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('summary', sa.Text(), nullable=True))
        batch_op.alter_column('last_error', new_column_name='error', existing_type=sa.Text())
        batch_op.alter_column('sent_at', new_column_name='finished_at', existing_type=sa.DateTime())
    op.execute("UPDATE outbound_email SET due_at = created_at")
    op.execute("UPDATE outbound_email SET status = CASE status WHEN 'queued' THEN 'pending' "
               "WHEN 'sending' THEN 'running' WHEN 'sent' THEN 'done' ELSE status END")
    op.execute("UPDATE outbound_email SET outcome = 'sent' WHERE status = 'done'")
    with op.batch_alter_table('outbound_email', schema=None) as batch_op:
        batch_op.alter_column('due_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.drop_index(op.f('ix_outbound_email_status'))
        batch_op.create_index(op.f('ix_outbound_email_work'), ['status', 'due_at'], unique=False)
        batch_op.create_check_constraint(op.f('ck_outbound_email_work_status'), f"status IN {STATUSES}")


def downgrade():
    with op.batch_alter_table('outbound_email', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_outbound_email_work_status'), type_='check')
        batch_op.drop_index(op.f('ix_outbound_email_work'))
    op.execute("UPDATE outbound_email SET status = CASE status WHEN 'pending' THEN 'queued' "
               "WHEN 'running' THEN 'sending' WHEN 'done' THEN 'sent' WHEN 'paused' THEN 'queued' "
               "WHEN 'skipped' THEN 'sent' ELSE status END")
    with op.batch_alter_table('outbound_email', schema=None) as batch_op:
        batch_op.alter_column('error', new_column_name='last_error', existing_type=sa.Text())
        batch_op.alter_column('finished_at', new_column_name='sent_at', existing_type=sa.DateTime())
        batch_op.drop_column('summary')
        batch_op.drop_column('outcome')
        batch_op.drop_column('due_at')
        batch_op.create_index(op.f('ix_outbound_email_status'), ['status'], unique=False)
        batch_op.create_check_constraint(op.f('ck_outbound_email_status'), "status IN ('queued', 'sending', 'sent', 'failed')")

    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_webhook_delivery_connection_id_dedupe_key'), type_='unique')
        batch_op.drop_constraint(op.f('ck_webhook_delivery_work_status'), type_='check')
        batch_op.drop_index(op.f('ix_webhook_delivery_work'))
        batch_op.add_column(sa.Column('enqueued_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE webhook_delivery SET status = 'received' WHERE status IN ('pending', 'running')")
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.alter_column('summary', new_column_name='result', existing_type=sa.Text())
        batch_op.alter_column('finished_at', new_column_name='processed_at', existing_type=sa.DateTime())
        batch_op.drop_column('outcome')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('due_at')
        batch_op.create_index(op.f('ix_webhook_delivery_status'), ['status'], unique=False)
        batch_op.create_unique_constraint(op.f('uq_webhook_delivery_plugin_key_dedupe_key'), ['plugin_key', 'dedupe_key'])
