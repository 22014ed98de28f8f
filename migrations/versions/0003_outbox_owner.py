"""outbox claims record their owner (host:pid)

Revision ID: 0003_outbox_owner
Revises: 0002_reset
Create Date: 2026-12-01 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003_outbox_owner'
down_revision = '0002_reset'
branch_labels = None
depends_on = None


def upgrade():
    # Reviewed by hand: a dispatcher that finds a claim owned by a process of its
    # host that no longer exists takes it over at once, without waiting for the lease.
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=300), nullable=True))


def downgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
