"""Alembic environment: runs on the connection `Database.upgrade()` hands over, under a lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from storage.models import Base

# An arbitrary constant shared by every drillbot process: the PostgreSQL advisory lock for migrations.
MIGRATION_LOCK_KEY = 7_412_903_118

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `drillbot db upgrade`")

sqlite = connection.dialect.name == "sqlite"
if sqlite:
    # A batch migration copies a table and drops the old one; with foreign keys on, dropping `drills`
    # would cascade-delete every answer. The pragma only takes effect outside a transaction.
    connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
with connection.begin():
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    # Configured inside our transaction, Alembic runs every step in it: one commit at the end, so the lock
    # (SQLite's write lock, the advisory lock) is held from the first step to the last. Configured before
    # it, Alembic committed after each step and released the lock between steps, so a second process could
    # apply a later step and the first then re-ran it from its stale plan ("table ... already exists").
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    # Under the lock, another process may have finished the upgrade already: Alembic re-reads the
    # current revision inside this transaction and has nothing left to do.
    context.run_migrations()
if sqlite:
    connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
