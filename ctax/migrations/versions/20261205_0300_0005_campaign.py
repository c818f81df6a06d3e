"""creatives.campaign: the poster's campaign, whose creatives are no novelty evidence for each other

Optional (an ad server's campaign id, as the poster sends it); existing creatives have none. Indexed: a poster
lists a campaign's creatives (GET /v1/creatives?campaign=...).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 03:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('creatives', schema=None) as batch_op:
        batch_op.add_column(sa.Column('campaign', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_creatives_campaign'), ['campaign'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('creatives', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_creatives_campaign'))
        batch_op.drop_column('campaign')
