"""Drill status and answer source are the domain's enums: each column gets a CHECK of the known values.

The columns stay VARCHAR(16) (SQLAlchemy `Enum(native_enum=False)` in `storage.models`): a later state is
a new constraint, not a PostgreSQL type to alter. The values are written out as of this revision (the
domain's enums may grow; this step must not change with them). A database holding a value outside them
stops the upgrade with a line naming the column and the values, before anything is changed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.errors import ConfigError

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATES = ("posting", "post_failed", "open", "revealing", "reveal_failed", "sealing", "closed")
SOURCES = ("thread", "modal")
CHECKS = (("drills", "status", "ck_drills_status", STATES), ("answers", "source", "ck_answers_source", SOURCES))


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    bind = op.get_bind()
    for table, column, _name, values in CHECKS:
        unknown = bind.execute(
            sa.text(f"SELECT DISTINCT {column} FROM {table} WHERE NOT ({_in(column, values)})")  # noqa: S608
        ).scalars().all()
        if unknown:
            raise ConfigError(
                f"DATABASE_URL: {table}.{column} holds values drillbot does not know ({', '.join(map(str, unknown))});"
                f" expected one of {', '.join(values)}"
            )
    for table, column, name, values in CHECKS:
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(name, _in(column, values))


def downgrade() -> None:
    for table, _column, name, _values in CHECKS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="check")
