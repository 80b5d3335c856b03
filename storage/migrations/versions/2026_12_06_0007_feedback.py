"""Feedback on every answer: the checklist DM claim, the key points people tick, the opt-out.

The self-ratings (`ratings`) stay as they are: the checklist replaces the question they asked, and the
stats read old ratings as coverage where a drill has no ticks (see bot.domain.feedback).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user_prefs") as batch:
        batch.add_column(sa.Column("feedback", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("dm_channel", sa.String(32), nullable=True))
    op.create_table(
        "feedback_dms",
        sa.Column("drill_id", sa.Integer, sa.ForeignKey("drills.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("claimed_at", UTCDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("ts", sa.String(32), nullable=True),
        sa.Column("graded", sa.Text, nullable=True),
        sa.Column("sent_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "key_point_ticks",
        sa.Column("drill_id", sa.Integer, sa.ForeignKey("drills.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("key_point", sa.Integer, primary_key=True),
        sa.Column("covered", sa.Boolean, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_point_ticks")
    op.drop_table("feedback_dms")
    with op.batch_alter_table("user_prefs") as batch:
        batch.drop_column("dm_channel")
        batch.drop_column("feedback")
