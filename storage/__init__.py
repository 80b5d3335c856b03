"""Persistence: SQLAlchemy 2 models, the engine/session factory, queries and Alembic migrations."""

from __future__ import annotations

from storage.db import Database
from storage.models import Answer, Base, Drill, DrillStatus, StreakState

__all__ = ["Answer", "Base", "Database", "Drill", "DrillStatus", "StreakState"]
