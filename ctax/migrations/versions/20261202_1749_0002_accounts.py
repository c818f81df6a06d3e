"""accounts: poster keys and their creatives belong to an account; idempotency keys are the account's

Existing poster keys, and the creatives they posted, move to one account named "default" (created only when
there is such data). Creatives posted by reviewer or admin keys, `ctax eval`'s and imported ones stay without an
account, as they would be made now.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 17:49:05.490340

"""
import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_ACCOUNT = "default"

# The creatives posted by poster keys, the ones that move into the default account.
POSTED_BY_POSTERS = "api_key_id IN (SELECT id FROM api_keys WHERE role = 'poster')"


def upgrade() -> None:
    """Upgrade schema."""
    accounts = op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('name', name=op.f('uq_accounts_name'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_api_keys_account_id'), ['account_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_api_keys_account_id_accounts'), 'accounts', ['account_id'], ['id'])

    # Two poster keys may have used the same Idempotency-Key; once both are the default account's, only the
    # oldest creative keeps it (a retry from either key then finds that one: replayed if the same request, 409 if
    # not), so that the account's unique key below holds.
    op.execute(sa.text(
        "UPDATE creatives SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL AND " + POSTED_BY_POSTERS +
        " AND EXISTS (SELECT 1 FROM creatives AS earlier WHERE earlier.idempotency_key = creatives.idempotency_key"
        " AND earlier.api_key_id IN (SELECT id FROM api_keys WHERE role = 'poster')"
        " AND (earlier.created_at < creatives.created_at"
        " OR (earlier.created_at = creatives.created_at AND earlier.id < creatives.id)))"))

    with op.batch_alter_table('creatives', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_id', sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_creatives_idempotency'), type_='unique')
        batch_op.create_unique_constraint('uq_creatives_idempotency', ['account_id', 'idempotency_key'])
        batch_op.create_unique_constraint('uq_creatives_key_idempotency', ['api_key_id', 'idempotency_key'])
        batch_op.create_index('ix_creatives_account_created', ['account_id', 'created_at'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_creatives_account_id_accounts'), 'accounts', ['account_id'], ['id'])

    bind = op.get_bind()
    if bind.scalar(sa.text("SELECT count(*) FROM api_keys WHERE role = 'poster'")):
        op.bulk_insert(accounts, [{"name": DEFAULT_ACCOUNT, "kind": "advertiser", "created_at": dt.datetime.now(dt.UTC)}])
        default = bind.scalar(sa.text("SELECT id FROM accounts WHERE name = :name"), {"name": DEFAULT_ACCOUNT})
        op.execute(sa.text("UPDATE api_keys SET account_id = :account WHERE role = 'poster'")
                   .bindparams(account=default))
        op.execute(sa.text("UPDATE creatives SET account_id = :account WHERE " + POSTED_BY_POSTERS)
                   .bindparams(account=default))


def downgrade() -> None:
    """Downgrade schema. The idempotency keys the upgrade cleared stay cleared."""
    with op.batch_alter_table('creatives', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_creatives_account_id_accounts'), type_='foreignkey')
        batch_op.drop_index('ix_creatives_account_created')
        batch_op.drop_constraint('uq_creatives_key_idempotency', type_='unique')
        batch_op.drop_constraint('uq_creatives_idempotency', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_creatives_idempotency'), ['api_key_id', 'idempotency_key'])
        batch_op.drop_column('account_id')

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_api_keys_account_id_accounts'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_api_keys_account_id'))
        batch_op.drop_column('account_id')

    op.drop_table('accounts')
