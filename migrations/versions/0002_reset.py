"""credentials, password reset, refresh families

Revision ID: 0002_reset
Revises: 0001_initial
Create Date: 2026-11-28 23:55:49.469904

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002_reset'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    # Reviewed by hand: constraint names come from the naming convention.
    op.create_table('security_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_security_events'))
    )
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.create_index('ix_security_events_kind_key_at', ['kind', 'key', 'created_at'], unique=False)

    op.create_table('password_reset_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('counter', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_password_reset_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_reset_codes'))
    )
    with op.batch_alter_table('password_reset_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_password_reset_codes_user_id'), ['user_id'], unique=False)

    op.create_table('refresh_families',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('current_jti', sa.String(length=32), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_refresh_families_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_families'))
    )
    with op.batch_alter_table('refresh_families', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_families_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='confirm', nullable=False))
        batch_op.create_index('ix_outbox_messages_to_addr_kind', ['to_addr', 'kind'], unique=False)

    # sqlite_autoincrement: SQLite rebuilds the table; ids must never be reused.
    with op.batch_alter_table('users', schema=None,
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('profile', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('credential_version', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('contested', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('reset_counter', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('reset_code_failures', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('reset_sent_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('duplicate_sent_at', sa.DateTime(timezone=True), nullable=True))



def downgrade():
    # Reviewed by hand: constraint names come from the naming convention.
    # sqlite_autoincrement: SQLite rebuilds the table; ids must never be reused.
    with op.batch_alter_table('users', schema=None,
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_column('duplicate_sent_at')
        batch_op.drop_column('reset_sent_at')
        batch_op.drop_column('reset_code_failures')
        batch_op.drop_column('reset_counter')
        batch_op.drop_column('contested')
        batch_op.drop_column('credential_version')
        batch_op.drop_column('profile')

    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_messages_to_addr_kind')
        batch_op.drop_column('kind')

    with op.batch_alter_table('refresh_families', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refresh_families_user_id'))

    op.drop_table('refresh_families')
    with op.batch_alter_table('password_reset_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_password_reset_codes_user_id'))

    op.drop_table('password_reset_codes')
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_index('ix_security_events_kind_key_at')

    op.drop_table('security_events')
