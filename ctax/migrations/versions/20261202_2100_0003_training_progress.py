"""training progress: the step, loss, time left and phase of a running training run

Written by the training worker at most every few seconds (ctax/training/progress.py) and read by
`GET /v1/training/runs/{id}`, `ctax train` and `ctax eval`. Existing runs keep NULLs: they never reported steps.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 21:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phase', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('total_steps', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('loss', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('eta_s', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        for column in ('updated_at', 'eta_s', 'loss', 'total_steps', 'step', 'phase'):
            batch_op.drop_column(column)
