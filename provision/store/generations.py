"""Change tracking: a store-wide generation counter, each node's generation of its last change,
and in-process notification of committed changes.

Every write that may change what a node is served (inventory entry, facts, builds) takes the
next generation and stamps it on the nodes it touched (`_bump`). A move of the node's state alone
does not: nothing rendered depends on it. Readers in any process find what changed since a
generation they saw with one indexed query (`changed_since`); the boot-config cache in the
writer's own process is also told right after the commit (`subscribe`) and drops the node at
once, and a runner waiting for a callback wakes on any change of its node, state moves included
(`change_event`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from sqlalchemy import insert, inspect, select, text, update
from sqlalchemy.orm import Session

from .models import AddressRow, MetaRow, NodeRow


class GenerationsMixin:
    def _init_changes(self) -> None:
        self._listeners: list[Callable[[dict[str, int]], None]] = []
        self._node_events: dict[str, threading.Event] = {}
        self._events_lock = threading.Lock()

    def generation(self) -> int:
        with self._session() as s:
            return s.scalar(select(MetaRow.value).where(MetaRow.key == "generation")) or 0

    def changed_since(self, generation: int) -> tuple[int, dict[str, tuple[int, list[str]]]]:
        """(the current generation, {node: (its generation, its MACs)} for every node changed after
        `generation`): one indexed scan whatever the fleet size; -1 gives every node."""
        with self._session() as s:
            current = s.scalar(select(MetaRow.value).where(MetaRow.key == "generation")) or 0
            rows = s.execute(select(NodeRow.name, NodeRow.generation, AddressRow.value)
                             .outerjoin(AddressRow, (AddressRow.node_id == NodeRow.id) & (AddressRow.kind == "MAC"))
                             .where(NodeRow.generation > generation)).all()
        out: dict[str, tuple[int, list[str]]] = {}
        for name, gen, mac in rows:
            entry = out.setdefault(name, (gen, []))
            if mac is not None:
                entry[1].append(mac)
        return current, out

    def subscribe(self, listener: Callable[[dict[str, int]], None]) -> None:
        """`listener({node: its new generation})` runs after each commit in this process that
        changed those nodes."""
        self._listeners.append(listener)

    def change_event(self, name: str) -> threading.Event:
        """An event set whenever node `name` changes in this process: clear it, read the node, then
        wait on it, and a change made after the read is never missed."""
        with self._events_lock:
            return self._node_events.setdefault(name, threading.Event())

    def _notify(self, changed: dict[str, int], moved: Iterable[str] = ()) -> None:
        """Wake the waiters of the changed and `moved` (state only) nodes; tell the listeners
        (caches of what nodes are served) of the changed ones."""
        with self._events_lock:
            events = [self._node_events[n] for n in {*changed, *moved} if n in self._node_events]
        for ev in events:
            ev.set()
        if changed:
            for listener in self._listeners:
                listener(changed)

    def node_generation(self, name: str) -> int:
        with self._session() as s:
            return self._row(s, name).generation

    @staticmethod
    def _bump(s: Session, rows: Iterable[NodeRow]) -> None:
        """Locks in one order everywhere: the nodes' rows (by id), then the counter. A writer that
        took the counter first and the node row at flush deadlocked on PostgreSQL against a
        compare-and-set holding that node row and waiting for the counter."""
        rows = list(rows)
        ids = sorted(r.id for r in rows if r.id is not None)
        if ids and s.get_bind().dialect.name != "sqlite":  # SQLite: BEGIN IMMEDIATE serializes writers
            s.execute(select(NodeRow.id).where(NodeRow.id.in_(ids)).order_by(NodeRow.id).with_for_update())
        with s.no_autoflush:  # the rows' own changes and their new generation go in one UPDATE at commit
            value = GenerationsMixin._next_generation(s.connection())
        changed = s.info.setdefault("changed", {})
        for r in rows:
            r.generation = changed[r.name] = value

    @staticmethod
    def _next_generation(conn) -> int:
        """Take the store's next generation: one UPDATE ... RETURNING, which also row-locks the
        counter until the commit (PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers)."""
        value = conn.execute(update(MetaRow).where(MetaRow.key == "generation")
                             .values(value=MetaRow.value + 1).returning(MetaRow.value)).scalar()
        if value is None:  # a database no write has touched yet
            conn.execute(insert(MetaRow).values(key="generation", value=1))
            value = 1
        return value

    def _migrate(self) -> None:
        """Columns added after a database was created (create_all adds tables, not columns)."""
        cols = {c["name"] for c in inspect(self.engine).get_columns("nodes")}
        if "generation" not in cols:
            with self.engine.begin() as conn:
                conn.execute(text("ALTER TABLE nodes ADD COLUMN generation INTEGER NOT NULL DEFAULT 0"))
                conn.execute(text("CREATE INDEX IF NOT EXISTS ix_nodes_generation ON nodes (generation)"))
        cols = {c["name"] for c in inspect(self.engine).get_columns("rebuilds")}
        added = [("runner", "VARCHAR(16) NOT NULL DEFAULT 'cli'"), ("owner", "VARCHAR(128)"),
                 ("lease_until", "TIMESTAMP"), ("control", "VARCHAR(16) NOT NULL DEFAULT 'run'"),
                 ("finished_at", "TIMESTAMP"), ("summary", "JSON")]
        missing = [(c, t) for c, t in added if c not in cols]
        if missing:  # runs stored before the conductor: all were CLI runs
            with self.engine.begin() as conn:
                for col, typ in missing:
                    conn.execute(text(f"ALTER TABLE rebuilds ADD COLUMN {col} {typ}"))
