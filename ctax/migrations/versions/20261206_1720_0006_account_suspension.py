"""accounts.suspended_at: an account an admin suspended; its poster keys are refused until it is resumed

Unlike revoking its keys one by one, suspending is undone by resuming: the keys work again, unchanged.
Existing accounts are active (NULL).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 17:20:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('suspended_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('suspended_at')
