"""The store's hot path: what every step of every node in a rebuild reads and writes (its state,
its step data, its events, its record and build), as Core statements built once at import and run
on DBAPI cursors (prepared.py), writes grouped into shared transactions (combine.py).

Building a statement and its cache key on each call cost more than running it: a node's state
read took 430 us of CPU as `select(...)` per call, 139 us prebuilt, 20 us prepared; a
compare-and-set through an ORM session took 1.9 ms. A 500-node batch makes about a hundred of
these per node, all on one interpreter, so this file is where a rebuild's orchestration overhead
goes (bench/rebuild.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError

from .. import tokens
from ..domain import Node
from ..errors import NotFound
from .clock import utcnow
from .models import BuildRow, EventRow, MetaRow, NodeRow, SnapshotRow
from .prepared import Cursor, Prepared, on, reading
from .records import Build, NodeRecord, Snapshot
from .runs import NodeState, merge

_N, _S, _B, _E, _M = (t.__table__.c for t in (NodeRow, SnapshotRow, BuildRow, EventRow, MetaRow))
_STATE_COLS = (_N.name, _N.cluster, _N.state, _N.step_started_at, _N.failed_step, _N.fail_reason, _N.rebuild_id,
               _N.data, _N.generation)

P = Prepared
NODE_STATE = P(select(*_STATE_COLS).where(_N.name == bindparam("name")))
NODE_STATES = select(*_STATE_COLS).where(_N.name.in_(bindparam("names", expanding=True)))  # Core: an expanding IN
CAS_READ = P(select(_N.id, *_STATE_COLS).where(_N.name == bindparam("name")).with_for_update())
CAS_WRITE = P(update(NodeRow.__table__).where(_N.id == bindparam("b_id")).values(
    state=bindparam("b_state"), step_started_at=bindparam("b_now"), updated_at=bindparam("b_now"),
    failed_step=bindparam("b_failed_step"), fail_reason=bindparam("b_fail_reason"),
    rebuild_id=bindparam("b_rebuild_id"), data=bindparam("b_data", type_=_N.data.type)))
DATA_READ = P(select(_N.id, _N.data).where(_N.name == bindparam("name")).with_for_update())
DATA_WRITE = P(update(NodeRow.__table__).where(_N.id == bindparam("b_id")).values(
    data=bindparam("b_data", type_=_N.data.type)))
EVENT = P(insert(EventRow.__table__).values(node_id=bindparam("e_node"), ts=bindparam("e_ts"),
                                            kind=bindparam("e_kind"), message=bindparam("e_message")))
EVENT_BY_NAME = P(insert(EventRow.__table__).from_select(
    ["node_id", "ts", "kind", "message"],
    select(_N.id, bindparam("ts", type_=_E.ts.type), bindparam("kind", type_=_E.kind.type),
           bindparam("message", type_=_E.message.type)).where(_N.name == bindparam("name"))))
NEXT_GENERATION = P(update(MetaRow.__table__).where(_M.key == "generation").values(value=_M.value + 1)
                    .returning(_M.value))
SET_GENERATION = P(update(NodeRow.__table__).where(_N.id == bindparam("b_id")).values(generation=bindparam("b_gen")))
LOCK_NODE = P(select(_N.id).where(_N.id == bindparam("id")).with_for_update())
_LATEST = select(func.max(_S.id)).where(_S.node_id == _N.id).scalar_subquery()
NODE_RECORD = P(select(_N.id, _N.name, _N.fqdn, _N.cluster, _N.profile, _N.bmc, _N.state, _N.updated_at,
                       _N.generation, _LATEST.label("snapshot_id")).where(_N.name == bindparam("name")))
SNAPSHOT_DATA = P(select(_S.data).where(_S.id == bindparam("id")))
SNAPSHOT_BY_ID = P(select(_S.id, _S.created_at, _S.source, _S.node_id).where(_S.id == bindparam("id")))
SNAPSHOT_LATEST = P(select(_S.id, _S.created_at, _S.source, _S.node_id).where(_S.node_id == bindparam("node"))
                    .order_by(_S.id.desc()).limit(1))
_BUILD_COLS = (_B.id, _N.name, _B.nonce, _B.snapshot_id, _B.created_at, _B.expires_at, _B.ks_fetched_at,
               _B.ended_at, _B.end_reason, _B.boot_local_at)
OPEN_BUILD = P(select(*_BUILD_COLS).join(NodeRow.__table__, _N.id == _B.node_id)
               .where(_N.name == bindparam("name"), _B.ended_at.is_(None)).order_by(_B.id.desc()).limit(1))
BUILD_BY_DIGEST = P(select(*_BUILD_COLS).join(NodeRow.__table__, _N.id == _B.node_id)
                    .where(_B.token_digest == bindparam("digest")))
BOOT_LOCAL = P(update(BuildRow.__table__).where(_B.id == bindparam("b_id"), _B.boot_local_at.is_(None))
               .values(boot_local_at=bindparam("b_now")))
BUILD_NODE = P(select(_N.id, _N.name).join(BuildRow.__table__, _N.id == _B.node_id).where(_B.id == bindparam("id")))
END_BUILDS = P(update(BuildRow.__table__).where(_B.node_id == bindparam("b_node"), _B.ended_at.is_(None))
               .values(ended_at=bindparam("b_now"), end_reason=bindparam("b_reason")))
NEW_BUILD = P(insert(BuildRow.__table__).values(
    node_id=bindparam("b_node"), nonce=bindparam("b_nonce"), token_digest=bindparam("b_digest"),
    snapshot_id=bindparam("b_snapshot"), created_at=bindparam("b_now"), expires_at=bindparam("b_expires"))
    .returning(_B.id))
NODE_ID = P(select(_N.id).where(_N.name == bindparam("name")))
NODE_ID_LOCKED = P(select(_N.id).where(_N.name == bindparam("name")).with_for_update())


@dataclass
class _Tx:
    conn: object  # the writer's SQLAlchemy Connection, in its transaction
    cur: Cursor  # a cursor on it for the prepared statements
    changed: dict[str, int] = field(default_factory=dict)  # node -> its new generation (what it is served)
    moved: set[str] = field(default_factory=set)  # nodes whose state moved (their runners wake)


def _state(r) -> NodeState:
    return NodeState(r.name, r.cluster, r.state, r.step_started_at, r.failed_step, r.fail_reason, r.rebuild_id,
                     dict(r.data or {}), r.generation)


def _events(node_id: int, now, events) -> list[dict]:
    return [{"e_node": node_id, "e_ts": now, "e_kind": k, "e_message": m} for k, m in events]


class HotPathMixin:
    """Mixed into Store: its engine, write lock, facts cache and change notification."""

    def _write(self, op):
        """Run `op(tx)` in a write transaction and return its result: at once, or in the
        transaction of the writer ahead of it (combine.py). After the commit this process's caches
        are told of the nodes whose generation changed, and its waiters of those and the moved ones."""
        return self._combiner.write(op)

    def _transaction(self, ops: list) -> list:
        """Called by the combiner with the write lock held: `ops` in one transaction."""
        conn = self._writer or self._open_writer()
        try:
            with conn.begin():
                tx = _Tx(conn, on(conn))
                results = [op(tx) for op in ops]
        except DBAPIError:  # a connection the database dropped is not used again
            self._close_writer()
            raise
        if tx.changed or tx.moved:
            self._notify(tx.changed, tx.moved)
        return results

    def _open_writer(self):
        """The hot path's own connection. On SQLite its commits are synchronous=NORMAL: in WAL mode
        a commit is then safe from any crash of this process (kill -9 included) and is made durable
        against a power cut by the next checkpoint or by the next ordinary (FULL) commit, e.g. an
        import. A node's steps are idempotent and resume from its recorded state, so after a power
        cut of this server the worst is a step done again; an fsync per move was half of each
        move's cost, and writers queue behind it."""
        conn = self._writer = self._write_engine.connect()
        if conn.dialect.name == "sqlite":
            conn.connection.driver_connection.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _close_writer(self) -> None:
        conn, self._writer = self._writer, None
        if conn is not None:
            conn.invalidate()  # never back to the pool: its setting stays with it
            conn.close()

    def _bump_core(self, tx: _Tx, node_id: int, name: str) -> int:
        """The node's next generation. The caller holds the node's row (_bump's lock order: the
        node, then the counter)."""
        generation = tx.cur.scalar(NEXT_GENERATION)
        if generation is None:  # a database no write has touched yet
            generation = self._next_generation(tx.conn)
        tx.cur.execute(SET_GENERATION, {"b_id": node_id, "b_gen": generation})
        tx.changed[name] = generation
        return generation

    # -- state ---------------------------------------------------------------------------------
    def node_state(self, name: str) -> NodeState:
        """The most frequent read of a rebuild (every loop of every runner): one indexed query."""
        with reading(self.engine) as cur:
            r = cur.first(NODE_STATE, {"name": name})
        if r is None:
            raise NotFound(f"node {name!r} is not in the inventory")
        return _state(r)

    def node_states(self, names: list[str]) -> dict[str, NodeState]:
        """Many nodes' states in one query (a batch's scheduler asks about all it may start)."""
        with self._reader.connect() as conn:
            rows = conn.execute(NODE_STATES, {"names": list(names)}).all() if names else []
        return {r.name: _state(r) for r in rows}

    def compare_and_set_state(self, name: str, expected: str, new: str, message: str, *,
                              failed_step: str | None = None, reason: str | None = None,
                              rebuild_id: int | None = None, data: dict | None = None,
                              replace_data: bool = False, events: list[tuple[str, str]] = (),
                              wake: bool = True) -> NodeState | None:
        """Move `name` from `expected` to `new` in one transaction with its event row (and
        `events`, (kind, message) pairs a step recorded on its way); the new NodeState, or None
        (and nothing written) when the node is no longer in `expected`. A move changes nothing the
        node is served (its builds do), so its generation stays and no cached config is dropped.
        `wake=False`: the node's waiter in this process is the caller, and is not woken by it."""
        now = utcnow()

        def op(tx: _Tx) -> NodeState | None:
            r = tx.cur.first(CAS_READ, {"name": name})
            if r is None:
                raise NotFound(f"node {name!r} is not in the inventory")
            if r.state != expected:
                return None
            fstep, freason = r.failed_step, r.fail_reason
            if new == "failed":
                fstep, freason = failed_step, reason
            elif expected == "failed" or new == "preflight":
                fstep, freason = None, None
            values = dict(r.data or {})
            if data is not None:
                values = merge({} if replace_data else values, data)
            rid = rebuild_id if rebuild_id is not None else r.rebuild_id
            tx.cur.execute(CAS_WRITE, {"b_id": r.id, "b_state": new, "b_now": now, "b_failed_step": fstep,
                                       "b_fail_reason": freason, "b_rebuild_id": rid, "b_data": values})
            tx.cur.many(EVENT, _events(r.id, now, [*events, ("transition", message)]))
            if wake:
                tx.moved.add(name)
            return NodeState(name, r.cluster, new, now, fstep, freason, rid, values, r.generation)

        return self._write(op)

    def update_data(self, name: str, **values) -> dict:
        """Merge step data (None removes a key); returns the new data."""
        return self.record_step(name, values)

    def record_step(self, name: str, values: dict, events: list[tuple[str, str]] = ()) -> dict:
        """Merge step data (None removes a key) and add (kind, message) events in one transaction;
        returns the new data."""
        def op(tx: _Tx) -> dict:
            r = tx.cur.first(DATA_READ, {"name": name})
            if r is None:
                raise NotFound(f"node {name!r} is not in the inventory")
            data = merge(r.data, values)
            tx.cur.execute(DATA_WRITE, {"b_id": r.id, "b_data": data})
            if events:
                tx.cur.many(EVENT, _events(r.id, utcnow(), events))
            return dict(data)

        return self._write(op)

    def add_event(self, name: str, kind: str, message: str) -> None:
        now = utcnow()

        def op(tx: _Tx) -> None:
            if not tx.cur.execute(EVENT_BY_NAME, {"name": name, "ts": now, "kind": kind, "message": message}):
                raise NotFound(f"node {name!r} is not in the inventory")

        self._write(op)

    # -- the node and its builds -------------------------------------------------------------
    def get(self, name: str, generation: int | None = None) -> NodeRecord:
        """The node's inventory entry with its latest facts (parsed once per process). With the
        `generation` the caller knows the node at (a runner's NodeState), the record read at that
        generation is reused: what it holds changes only with a new generation (its state and
        updated_at are then as they were at that read)."""
        if generation is not None:
            hit = self._records.get(name)
            if hit is not None and hit[0] == generation:
                return hit[1]
        with reading(self.engine) as cur:
            r = cur.first(NODE_RECORD, {"name": name})
            if r is None:
                raise NotFound(f"node {name!r} is not in the inventory")
            facts = None
            if r.snapshot_id is not None:
                facts = self._facts.get(r.snapshot_id) or self._parse_facts(
                    r.snapshot_id, cur.scalar(SNAPSHOT_DATA, {"id": r.snapshot_id}))
        node = Node(name=r.name, fqdn=r.fqdn, cluster=r.cluster, profile=r.profile, bmc=r.bmc, facts=facts)
        record = NodeRecord(node, r.state, r.snapshot_id, r.updated_at)
        if len(self._records) > 20000:
            self._records.clear()
        self._records[name] = (r.generation, record)
        return record

    def snapshot(self, name: str, snapshot_id: int | None = None) -> Snapshot:
        """The named snapshot of `name`, or its latest; NotFound when there is none. Its JSON is
        read only the first time this process parses it."""
        with reading(self.engine) as cur:
            node = cur.first(NODE_ID, {"name": name})
            if node is None:
                raise NotFound(f"node {name!r} is not in the inventory")
            r = cur.first(SNAPSHOT_LATEST, {"node": node.id}) if snapshot_id is None \
                else cur.first(SNAPSHOT_BY_ID, {"id": snapshot_id})
            if r is None or r.node_id != node.id:
                raise NotFound(f"node {name!r}: no facts snapshot" + (f" {snapshot_id}" if snapshot_id else ""))
            facts = self._facts.get(r.id) or self._parse_facts(r.id, cur.scalar(SNAPSHOT_DATA, {"id": r.id}))
        return Snapshot(r.id, name, r.created_at, r.source, facts)

    def active_build(self, name: str) -> Build | None:
        with reading(self.engine) as cur:
            r = cur.first(OPEN_BUILD, {"name": name})
            if r is None and cur.first(NODE_ID, {"name": name}) is None:
                raise NotFound(f"node {name!r} is not in the inventory")
        build = Build(*r) if r is not None else None
        return build if build and build.live() else None

    def build_by_digest(self, digest: str) -> Build | None:
        with reading(self.engine) as cur:
            r = cur.first(BUILD_BY_DIGEST, {"digest": digest})
        return Build(*r) if r is not None else None

    def set_boot_local(self, build_id: int) -> bool:
        """Switch a build's boot configs to local boot (the token stays valid). True if it changed."""
        now = utcnow()

        def op(tx: _Tx) -> bool:
            node = tx.cur.first(BUILD_NODE, {"id": build_id})
            if node is None:
                raise NotFound(f"build {build_id} does not exist")
            if tx.conn.dialect.name != "sqlite":  # SQLite: BEGIN IMMEDIATE already holds every row
                tx.cur.execute(LOCK_NODE, {"id": node.id})
            if not tx.cur.execute(BOOT_LOCAL, {"b_id": build_id, "b_now": now}):
                return False
            self._bump_core(tx, node.id, node.name)
            return True

        return self._write(op)

    def arm(self, name: str, key: str, ttl_seconds: int, snapshot_id: int | None = None) -> tuple[Build, str]:
        """Start a build: a fresh nonce and the token derived from it with the server `key`
        (only its digest is stored); ends any earlier build. Returns the build and its token."""
        now = utcnow()
        nonce = tokens.new_nonce()
        token = tokens.derive(key, nonce)
        expires = now + timedelta(seconds=ttl_seconds)

        def op(tx: _Tx) -> int:
            r = tx.cur.first(NODE_ID_LOCKED, {"name": name})
            if r is None:
                raise NotFound(f"node {name!r} is not in the inventory")
            tx.cur.execute(END_BUILDS, {"b_node": r.id, "b_now": now, "b_reason": "superseded"})
            build_id = tx.cur.scalar(NEW_BUILD, {"b_node": r.id, "b_nonce": nonce, "b_digest": tokens.digest(token),
                                                 "b_snapshot": snapshot_id, "b_now": now, "b_expires": expires})
            self._bump_core(tx, r.id, name)
            return build_id

        return Build(self._write(op), name, nonce, snapshot_id, now, expires, None, None, None, None), token

    def end_build(self, name: str, reason: str) -> None:
        now = utcnow()

        def op(tx: _Tx) -> None:
            r = tx.cur.first(NODE_ID_LOCKED, {"name": name})
            if r is None:
                raise NotFound(f"node {name!r} is not in the inventory")
            tx.cur.execute(END_BUILDS, {"b_node": r.id, "b_now": now, "b_reason": reason})
            self._bump_core(tx, r.id, name)

        self._write(op)
