"""The store's connection to its database, and its one write path.

- `Database.read()`: a connection for reads (SQLite: one deferred transaction, its own snapshot).
- `Database.write()`: every write of the store, as Core statements on one connection inside one
  transaction (`Tx`): BEGIN IMMEDIATE on SQLite (writers queue on the busy timeout instead of
  failing on a stale snapshot), row locks (FOR UPDATE) on PostgreSQL, so a read-modify-write such
  as a state compare-and-set is atomic across threads and processes. In-process writers queue on a
  lock first (SQLite's busy handler sleeps in steps of up to 100 ms).
- `Tx.bump(node_id, name)`: the one generation bump. Every write that may change what a node is
  served (its inventory entry, facts, builds) takes the store's next generation and stamps it on the
  node: caches in any process find what changed with one indexed query. After the commit, this
  process's listeners are told of the bumped nodes and its waiters of those and the moved ones.

SQLite runs in WAL mode with synchronous=NORMAL: a commit is safe from any crash of this process
(kill -9 included) and made durable against a power cut by the next checkpoint. A node's steps
are idempotent and resume from its recorded state, so after a power cut the worst is a step done
again; an fsync per move was half of each move's cost."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update

from .models import MetaRow, NodeRow, table

T_META, T_NODE = table(MetaRow), table(NodeRow)


@dataclass
class Tx:
    """A write transaction: its connection, and what it changed (told after the commit)."""
    conn: Connection
    changed: dict[str, int] = field(default_factory=dict)  # node -> its new generation
    moved: set[str] = field(default_factory=set)  # nodes whose state moved (their waiters wake)

    def execute(self, stmt, params=None):
        return self.conn.execute(stmt, params) if params is not None else self.conn.execute(stmt)

    def lock_nodes(self, ids: Iterable[int]) -> None:
        """Row-lock nodes in id order (PostgreSQL; SQLite's BEGIN IMMEDIATE holds every row): one
        lock order everywhere, the nodes first, then the generation counter."""
        ids = sorted(set(ids))
        if ids and self.conn.dialect.name != "sqlite":
            self.conn.execute(select(T_NODE.c.id).where(T_NODE.c.id.in_(ids)).order_by(T_NODE.c.id).with_for_update())

    def bump(self, nodes: dict[int, str]) -> int:
        """Stamp the store's next generation on `nodes` ({id: name}), whose rows the caller holds."""
        value = self.conn.execute(update(T_META).where(T_META.c.key == "generation")
                                  .values(value=T_META.c.value + 1).returning(T_META.c.value)).scalar()
        if value is None:  # a database no write has touched yet
            self.conn.execute(insert(T_META).values(key="generation", value=1))
            value = 1
        if nodes:
            self.conn.execute(update(T_NODE).where(T_NODE.c.id.in_(list(nodes))).values(generation=value))
            self.changed.update({name: value for name in nodes.values()})
        return value


class Database:
    def __init__(self, url: str, create: bool = True) -> None:
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            db = Path(url.removeprefix("sqlite:///"))
            if not create and not db.is_file():
                from .schema import NoDatabase
                raise NoDatabase("no such file")
            db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if db.exists():
                db.chmod(0o600)
        kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._write_engine = self.engine.execution_options(provision_write=True)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[dict[str, int]], None]] = []
        self._node_events: dict[str, threading.Event] = {}
        self._events_lock = threading.Lock()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        with self._lock, self._write_engine.begin() as conn:
            tx = Tx(conn)
            yield tx
        if tx.changed or tx.moved:  # committed
            self._notify(tx.changed, tx.moved)

    # -- in-process change notification ------------------------------------------------------
    def subscribe(self, listener: Callable[[dict[str, int]], None]) -> None:
        self._listeners.append(listener)

    def change_event(self, name: str) -> threading.Event:
        with self._events_lock:
            return self._node_events.setdefault(name, threading.Event())

    def _notify(self, changed: dict[str, int], moved: Iterable[str] = ()) -> None:
        with self._events_lock:
            events = [self._node_events[n] for n in {*changed, *moved} if n in self._node_events]
        for ev in events:
            ev.set()
        if changed:
            for listener in self._listeners:
                listener(changed)

    def close(self) -> None:
        with self._lock:
            self.engine.dispose()


def _sqlite_connect(dbapi_conn, _record) -> None:
    # pysqlite begins transactions only before DML, so a SELECT then UPDATE is not atomic; take
    # transaction control away from the driver and let _sqlite_begin emit BEGIN (SQLAlchemy's
    # documented pysqlite recipe).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn) -> None:
    write = conn.get_execution_options().get("provision_write")
    conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
