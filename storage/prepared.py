"""Prepared statements: a Core statement compiled once per dialect and run on the driver's own cursor.

For the answer path only, where it runs once per Slack event: SQLAlchemy's per-execution work (the compiled
cache lookup, the execution context, bind and result processing through its layers, the Result object)
cost as much as SQLite itself. The statement is still written, and compiled, by SQLAlchemy: one
definition, whatever runs it. Its bind and result processors are the column types' own, so values go in
and come out exactly as through `Connection.execute` (a test runs both and compares).

It runs inside the caller's transaction (the Connection's driver connection), so it commits or rolls back
with everything else done on that Connection. SQLAlchemy's cursor events do not see it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

__all__ = ["Prepared"]

Processor = Callable[[Any], Any] | None


class Prepared:
    """`statement` (a Core statement with bind parameters) ready to run on a Connection of any dialect."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row the statement returns (RETURNING or SELECT), with its columns' result processing."""
        compiled = self._compiled.get(conn.dialect.name)
        if compiled is None:
            compiled = self._compiled[conn.dialect.name] = _Compiled(self.statement, conn.dialect)
        return compiled.run(conn, params)


class _Compiled:
    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=dialect))
        self.sql = compiled.string
        self.names: Sequence[str] | None = compiled.positiontup if compiled.positional else None
        self.binds = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()
        }
        columns = getattr(statement, "exported_columns", ())
        self.results: list[Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        self.plain = not any(self.results)

    def run(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        values = {}
        for name, process in self.binds.items():
            value = params[name]
            values[name] = process(value) if process is not None else value
        driver = conn.connection.driver_connection
        assert driver is not None
        bound = [values[name] for name in self.names] if self.names is not None else values
        cursor = driver.cursor()
        try:
            cursor.execute(self.sql, bound)
            rows = cursor.fetchall() if cursor.description is not None else []
        except conn.dialect.loaded_dbapi.Error as exc:
            # Raised as SQLAlchemy's, as `Connection.execute` would: callers tell a database failure (Slack
            # redelivers) from a bug the same way whichever way the statement ran.
            raise DBAPIError.instance(self.sql, bound, exc, conn.dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()
        if self.plain:
            return [tuple(row) for row in rows]
        return [
            tuple(p(value) if p is not None else value for p, value in zip(self.results, row, strict=True))
            for row in rows
        ]
