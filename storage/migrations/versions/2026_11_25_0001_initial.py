"""Initial schema: drills and answers.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drills",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("question_id", sa.String(80), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ts", sa.String(32)),
        sa.Column("deadline", UTCDateTime, nullable=False),
        sa.Column("posted_at", UTCDateTime),
        sa.Column("reveal_ts", sa.String(32)),
        sa.Column("revealed_at", UTCDateTime),
        sa.Column("answer_count", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_at", UTCDateTime),
        sa.Column("error", sa.String(255)),
        sa.Column("created_at", UTCDateTime, server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("channel", "day", name="uq_drills_channel_day"),
    )
    op.create_index("ix_drills_channel_ts", "drills", ["channel", "ts"])
    op.create_index("ix_drills_status_deadline", "drills", ["status", "deadline"])
    op.create_table(
        "answers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("drill_id", sa.Integer, sa.ForeignKey("drills.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("message_ts", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("channel", "message_ts", name="uq_answers_channel_message_ts"),
    )
    op.create_index("ix_answers_drill_user", "answers", ["drill_id", "user_id"])
    op.create_index("ix_answers_user", "answers", ["user_id"])


def downgrade() -> None:
    op.drop_table("answers")
    op.drop_table("drills")
