"""The store's hottest statements, run straight on a DBAPI cursor.

SQLAlchemy still writes the SQL (compiled once per dialect, SQLite or PostgreSQL) and converts
every value with the dialect's own type processors (DateTime, JSON), so what is stored is exactly
what SQLAlchemy would store. What is skipped is its per-execution machinery: a node-state read
cost 139 us of CPU through a Connection and 20 us here, and a rolling batch of 50 nodes makes
about a hundred such statements per node on one interpreter (bench/rebuild.py). Statements
executed here do not pass through SQLAlchemy's cursor events."""

from __future__ import annotations

import contextlib
from collections import namedtuple
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class _Plan:
    sql: str
    positional: bool
    order: tuple[str, ...]  # the bind names in the SQL's order (positional paramstyles)
    fixed: dict[str, Any]  # values the statement carries itself (where key = 'generation')
    binds: dict[str, Callable | None]  # name -> the dialect's bind processor
    results: tuple[Callable | None, ...]  # per result column, the dialect's result processor
    row: type  # a namedtuple of the result columns' keys


class Prepared:
    def __init__(self, stmt) -> None:
        self.stmt = stmt
        self._plans: dict[int, _Plan] = {}

    def plan(self, dialect) -> _Plan:
        plan = self._plans.get(id(dialect))
        if plan is None:
            compiled = self.stmt.compile(dialect=dialect)
            binds, fixed = {}, {}
            for bp, name in compiled.bind_names.items():
                binds[name] = bp.type.dialect_impl(dialect).bind_processor(dialect)
                if not bp.required:
                    fixed[name] = bp.effective_value
            columns = getattr(self.stmt, "exported_columns", None) or ()
            plan = self._plans[id(dialect)] = _Plan(
                compiled.string, bool(compiled.positional), tuple(compiled.positiontup or ()), fixed, binds,
                tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns),
                namedtuple("Row", [getattr(c, "key", None) or f"c{i}" for i, c in enumerate(columns)], rename=True))
        return plan

    def params(self, plan: _Plan, values: dict) -> tuple | dict:
        merged = plan.fixed | values if plan.fixed else values
        out = {}
        for name, proc in plan.binds.items():
            value = merged[name]
            out[name] = proc(value) if proc is not None and value is not None else value
        return tuple(out[n] for n in plan.order) if plan.positional else out


def _row(plan: _Plan, raw) -> tuple | None:
    if raw is None:
        return None
    return plan.row._make(p(v) if p is not None else v for p, v in zip(plan.results, raw, strict=True))


class Cursor:
    """A DBAPI cursor and the dialect, with Prepared statements run on it."""

    def __init__(self, cursor, dialect) -> None:
        self.cursor, self.dialect = cursor, dialect

    def execute(self, stmt: Prepared, values: dict | None = None) -> int:
        """Run `stmt`; the number of rows it changed."""
        plan = stmt.plan(self.dialect)
        params = stmt.params(plan, values or {})
        try:
            self.cursor.execute(plan.sql, params)
        except self.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(plan.sql, params, exc, self.dialect.loaded_dbapi.Error) from None
        return self.cursor.rowcount

    def many(self, stmt: Prepared, rows: list[dict]) -> None:
        plan = stmt.plan(self.dialect)
        params = [stmt.params(plan, r) for r in rows]
        try:
            self.cursor.executemany(plan.sql, params)
        except self.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(plan.sql, params, exc, self.dialect.loaded_dbapi.Error) from None

    def first(self, stmt: Prepared, values: dict | None = None) -> tuple | None:
        self.execute(stmt, values)
        return _row(stmt.plan(self.dialect), self.cursor.fetchone())

    def scalar(self, stmt: Prepared, values: dict | None = None) -> Any:
        row = self.first(stmt, values)
        return row[0] if row is not None else None


@contextlib.contextmanager
def reading(engine) -> Iterator[Cursor]:
    """A pooled DBAPI connection for reads: no BEGIN on SQLite (each statement is its own
    snapshot); on PostgreSQL the driver's transaction is rolled back when it goes back to the pool."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        try:
            yield Cursor(cur, engine.dialect)
        finally:
            cur.close()
    finally:
        raw.close()


def on(conn) -> Cursor:
    """A cursor on a SQLAlchemy Connection's DBAPI connection, inside its transaction."""
    return Cursor(conn.connection.cursor(), conn.dialect)
