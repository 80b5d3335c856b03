"""Snoozes, the leaderboard opt-out, and the weekly digest claim.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snoozes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("first_day", sa.Date, nullable=False),
        sa.Column("last_day", sa.Date, nullable=False),
    )
    op.create_index("ix_snoozes_user_id", "snoozes", ["user_id"])
    op.create_table(
        "user_prefs",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("private", sa.Boolean, nullable=False),
    )
    op.create_table(
        "digests",
        sa.Column("slot", UTCDateTime, primary_key=True),
        sa.Column("program", sa.String(64), primary_key=True),
        sa.Column("manager", sa.String(32), primary_key=True),
        sa.Column("sent_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("digests")
    op.drop_table("user_prefs")
    op.drop_table("snoozes")
