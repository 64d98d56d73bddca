"""Alert runs of experiments: ``alert_runs.stream`` holds ``experiment:KEY`` too, so it takes
200 characters (an experiment key has up to 189).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_runs", schema=None) as batch_op:
        batch_op.alter_column(
            "stream",
            existing_type=sa.String(length=64),
            type_=sa.String(length=200),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_runs", schema=None) as batch_op:
        batch_op.alter_column(
            "stream",
            existing_type=sa.String(length=200),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
