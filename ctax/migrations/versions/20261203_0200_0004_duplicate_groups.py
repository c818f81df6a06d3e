"""duplicate groups: a creative may join an already-labelled creative's group, and a group has one review item

`creatives.duplicate_of` names the group's root (none: the creative is a root, or in no group),
`creatives.text_sha256` is the hash of its normalised texts that exact text duplicates are found by
(ctax/labelling/duplicates.py; exact image duplicates by the existing image_sha256), written when it is labelled,
and `review_items.members` counts the creatives the root's item stands for (itself included). Existing rows: no
group, one member each.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 02:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('creatives', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duplicate_of', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('text_sha256', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_creatives_duplicate_of'), ['duplicate_of'], unique=False)
        batch_op.create_index(batch_op.f('ix_creatives_text_sha256'), ['text_sha256'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_creatives_duplicate_of_creatives'), 'creatives',
                                    ['duplicate_of'], ['id'], ondelete='SET NULL')
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('members', sa.Integer(), nullable=False, server_default='1'))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_column('members')
    with op.batch_alter_table('creatives', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_creatives_duplicate_of_creatives'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_creatives_text_sha256'))
        batch_op.drop_index(batch_op.f('ix_creatives_duplicate_of'))
        batch_op.drop_column('text_sha256')
        batch_op.drop_column('duplicate_of')
