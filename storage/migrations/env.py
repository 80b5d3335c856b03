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

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
sqlite = connection.dialect.name == "sqlite"
if sqlite:
    # A batch migration copies a table and drops the old one; with foreign keys on, dropping `drills`
    # would cascade-delete every answer. The pragma only takes effect outside a transaction.
    connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
with connection.begin():
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    # Under the lock, another process may have finished the upgrade already: Alembic re-reads the
    # current revision inside this transaction and has nothing left to do.
    context.run_migrations()
if sqlite:
    connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
