"""The drill lifecycle written down; drills carry their question; stale streaks as a marker; local digest slots.

- `failed` splits into `post_failed` (no message: nothing was posted) and `reveal_failed` (posted, the
  guidance still owed), told apart by whether the drill has a message ts.
- `drills.question`: the question as it was asked (JSON). Existing drills are backfilled from the bank
  the upgrading process loaded (`Database.upgrade(bank=...)`) where the id still exists; elsewhere the
  copy is `{"id": ..., "missing": true}` and the drill still reveals with what is known.
- `streak_rebuilds`: channels whose stored streaks must be rebuilt (see storage.models.StreakRebuild);
  drills already marked for a rebuild the old way (`streaks` deleted, `streak_applied` false) need none.
- `digests.slot` becomes the slot's local wall-clock time (text); old claims are kept as their UTC time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from storage.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("drills") as batch:
        batch.add_column(sa.Column("question", sa.Text, nullable=True))
    drills = sa.table(
        "drills",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("ts", sa.String),
        sa.column("question_id", sa.String),
        sa.column("question", sa.Text),
    )
    bind.execute(
        drills.update().where(drills.c.status == "failed", drills.c.ts.is_(None)).values(status="post_failed")
    )
    bind.execute(drills.update().where(drills.c.status == "failed").values(status="reveal_failed"))

    config = op.get_context().config
    bank: Any = config.attributes.get("bank") if config is not None else None
    for drill_id, question_id in bind.execute(sa.select(drills.c.id, drills.c.question_id)).all():
        question = bank.get(question_id) if bank is not None else None
        copy = question.snapshot() if question is not None else json.dumps({"id": question_id, "missing": True})
        bind.execute(drills.update().where(drills.c.id == drill_id).values(question=copy))

    op.create_table(
        "streak_rebuilds",
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("requested_at", UTCDateTime, nullable=False),
    )

    old = sa.table(
        "digests",
        sa.column("slot", UTCDateTime),
        sa.column("program", sa.String),
        sa.column("manager", sa.String),
        sa.column("sent_at", UTCDateTime),
    )
    rows = bind.execute(sa.select(old.c.slot, old.c.program, old.c.manager, old.c.sent_at)).all()
    op.drop_table("digests")
    new = op.create_table(
        "digests",
        sa.Column("slot", sa.String(32), primary_key=True),
        sa.Column("program", sa.String(64), primary_key=True),
        sa.Column("manager", sa.String(32), primary_key=True),
        sa.Column("sent_at", UTCDateTime, nullable=False),
    )
    if rows:
        op.bulk_insert(
            new,
            [
                {"slot": slot.strftime("%Y-%m-%dT%H:%M") + "Z", "program": p, "manager": m, "sent_at": sent}
                for slot, p, m, sent in rows
            ],
        )


def downgrade() -> None:
    op.drop_table("digests")
    op.create_table(
        "digests",
        sa.Column("slot", UTCDateTime, primary_key=True),
        sa.Column("program", sa.String(64), primary_key=True),
        sa.Column("manager", sa.String(32), primary_key=True),
        sa.Column("sent_at", UTCDateTime, nullable=False),
    )
    op.drop_table("streak_rebuilds")
    op.execute("UPDATE drills SET status = 'failed' WHERE status IN ('post_failed', 'reveal_failed')")
    with op.batch_alter_table("drills") as batch:
        batch.drop_column("question")
