"""accounts.quotas: an account's own quotas (creatives it may hold), where the service's do not suit it; and
accounts.creatives_held, the count a quota is checked against (kept while a quota applies)

Existing accounts follow the service's quota, CTAX_QUOTA_CREATIVES (NULL); by default there is none. Their count is
not kept yet (NULL): the first post under a quota counts what the account holds.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:10:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quotas', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('creatives_held', sa.Integer(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('creatives_held')
        batch_op.drop_column('quotas')
