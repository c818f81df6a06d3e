"""outbox: which worker runs a job, since when, how many times it started, when it ended; and a job's earliest send

A job a killed worker had started is sent again (store/outbox.py). Existing jobs were never tracked: no worker,
zero starts, not done (they are never resent: only a job with a worker is), and are sent at once (no not_before).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('running_on', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('starts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('done_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('not_before', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_running_on'), ['running_on'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_running_on'))
        batch_op.drop_column('not_before')
        batch_op.drop_column('done_at')
        batch_op.drop_column('starts')
        batch_op.drop_column('started_at')
        batch_op.drop_column('running_on')
