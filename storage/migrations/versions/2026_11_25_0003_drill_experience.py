"""Sealed answers, live counts, reminders, self-ratings and practice history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("drills", sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("drills", sa.Column("count_shown", sa.Integer, nullable=False, server_default="0"))
    op.add_column("drills", sa.Column("count_updated_at", UTCDateTime))
    op.add_column("drills", sa.Column("reminded_at", UTCDateTime))
    op.add_column("answers", sa.Column("source", sa.String(16), nullable=False, server_default="thread"))
    op.create_table(
        "ratings",
        sa.Column("drill_id", sa.Integer, sa.ForeignKey("drills.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("rating", sa.String(16), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("rated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_ratings_user", "ratings", ["user_id"])
    op.create_table(
        "practice_views",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("question_id", sa.String(80), primary_key=True),
        sa.Column("seen_at", UTCDateTime, nullable=False),
        sa.Column("times", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("practice_views")
    op.drop_table("ratings")
    op.drop_column("answers", "source")
    for column in ("reminded_at", "count_updated_at", "count_shown", "sealed"):
        op.drop_column("drills", column)
