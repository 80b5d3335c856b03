"""Streak state kept as drills close: a `streaks` table and `drills.streak_applied`.

Existing drills start as not applied; the first drill that closes after the upgrade folds in every
closed drill in order, and until then leaderboards replay them (same result, just slower).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (with a constant default) works on SQLite too: no table copy needed.
    op.add_column("drills", sa.Column("streak_applied", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "streaks",
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("current", sa.Integer, nullable=False),
        sa.Column("longest", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("streaks")
    with op.batch_alter_table("drills") as batch:
        batch.drop_column("streak_applied")
