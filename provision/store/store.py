"""The store: the only module that speaks SQL (SQLAlchemy 2; SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, event, make_url, select, update
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..domain import Facts, Node
from ..errors import InputError, NotFound, ProvisionError
from .addresses import AddressesMixin
from .clock import utcnow
from .combine import Combiner
from .generations import GenerationsMixin
from .hot import HotPathMixin
from .imports import ImportMixin
from .media import MediaMixin
from .models import Base, BuildRow, EventRow, NodeRow, SnapshotRow
from .records import Build, Event, NodeRecord, Snapshot
from .runs import RunsMixin


def facts_json(facts: Facts) -> str:
    return json.dumps(facts.model_dump(mode="json"), sort_keys=True)


def facts_digest(facts: Facts) -> str:
    return hashlib.sha256(facts_json(facts).encode()).hexdigest()


def make_url_safe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


class Store(HotPathMixin, ImportMixin, RunsMixin, AddressesMixin, GenerationsMixin, MediaMixin):
    def __init__(self, url: str) -> None:
        """Opens (creating if needed) the database; a path or server that cannot be used is a clean
        ProvisionError naming db_url (password masked), never a traceback. A SQLite file and its
        directory are private to the owner (0600/0700): they hold build tokens' digests and sealed OTPs."""
        try:
            if url.startswith("sqlite:///") and not url.endswith(":memory:"):
                db = Path(url.removeprefix("sqlite:///"))
                db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                if db.exists():
                    db.chmod(0o600)
            kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
            self.engine = create_engine(url, **kwargs)
            if url.startswith("sqlite"):
                event.listen(self.engine, "connect", _sqlite_connect)
                event.listen(self.engine, "begin", _sqlite_begin)
            Base.metadata.create_all(self.engine)
            self._migrate()
        except (OSError, SQLAlchemyError, ArgumentError) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise ProvisionError(f"db_url {make_url_safe(url)}: cannot open the database: "
                                 f"{getattr(reason, 'strerror', None) or str(reason).splitlines()[0]}") from None
        # Reads: a plain transaction. Writes: BEGIN IMMEDIATE on SQLite (writers queue on the busy
        # timeout instead of failing on a stale snapshot) and row locks (FOR UPDATE) on PostgreSQL,
        # so a read-modify-write such as a state compare-and-set is atomic across threads and processes.
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(provision_write=True)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        # one-statement reads (hot.py): no BEGIN on SQLite, a statement is its own snapshot
        self._reader = self.engine.execution_options(provision_read=True)
        # In-process writers queue on a lock rather than in SQLite's busy handler (which sleeps
        # in steps of up to 100 ms); BEGIN IMMEDIATE still orders writers across processes.
        self._write_lock = threading.Lock()
        self._writer = None  # the connection the holder of _write_lock writes on (hot.py)
        self._combiner = Combiner(self._write_lock, self._transaction)
        self._records: dict[str, tuple[int, NodeRecord]] = {}  # node -> (generation, its record then)
        self._facts: dict[int, Facts] = {}  # snapshots are immutable: parsed facts by snapshot id
        self._init_changes()
        self._backfill_addresses()

    def close(self) -> None:
        with self._combiner.exclusive():
            self._close_writer()
        self.engine.dispose()

    @contextlib.contextmanager
    def _writing(self):
        with self._combiner.exclusive():
            with self._write_sessions.begin() as s:
                yield s
                changed = s.info.pop("changed", None)
        if changed:  # committed: tell this process's waiters and caches
            self._notify(changed)

    # -- nodes ------------------------------------------------------------------------------
    def list_nodes(self, cluster: str | None = None) -> list[NodeRecord]:
        with self._session() as s:
            q = select(NodeRow).order_by(NodeRow.name)
            if cluster:
                q = q.where(NodeRow.cluster == cluster)
            return [self._record(s, r) for r in s.scalars(q)]

    def set_state(self, name: str, state: str) -> None:
        with self._writing() as s:
            row = self._row(s, name)
            row.state = state
            self._bump(s, [row])

    # -- facts snapshots (append-only) --------------------------------------------------------
    def add_snapshot(self, name: str, facts: Facts, source: str) -> Snapshot:
        """Every capture path (engine, node upload, file, API) ends here: the MACs and IPs are checked
        against every other node's in the same transaction (InputError names both nodes)."""
        with self._writing() as s:
            row = self._row(s, name)
            snap = self._add_snapshot(s, row.id, facts, source, utcnow(), name)
            self._bump(s, [row])
            return Snapshot(snap.id, name, snap.created_at, source, facts)

    def snapshots(self, name: str) -> list[Snapshot]:
        with self._session() as s:
            row = self._row(s, name)
            rows = s.scalars(select(SnapshotRow).where(SnapshotRow.node_id == row.id).order_by(SnapshotRow.id))
            return [self._snapshot(name, r) for r in rows]

    def render_view(self, name: str, snapshot_id: int | None = None) -> tuple[NodeRecord, Snapshot, Build | None]:
        """Everything a render needs, in one session: the node, its facts snapshot (latest or
        named; NotFound when none) and its live build (or None)."""
        with self._session() as s:
            row = self._row(s, name)
            latest = self._latest(s, row.id)
            snap = latest if snapshot_id is None else s.get(SnapshotRow, snapshot_id)
            if snap is None or snap.node_id != row.id:
                raise NotFound(f"node {name!r}: no facts snapshot" + (f" {snapshot_id}" if snapshot_id else "")
                               + " (capture or import facts first)")
            b = s.scalar(select(BuildRow).where(BuildRow.node_id == row.id, BuildRow.ended_at.is_(None))
                         .order_by(BuildRow.id.desc()).limit(1))
            build = self._build(name, b) if b else None
            node = Node(name=row.name, fqdn=row.fqdn, cluster=row.cluster, profile=row.profile, bmc=row.bmc,
                        facts=self._parsed(latest))
            return (NodeRecord(node, row.state, latest.id, row.updated_at), self._snapshot(name, snap),
                    build if build and build.live() else None)

    def prune_snapshots(self, name: str, keep: int) -> list[int]:
        """Delete all but the newest `keep` (>= 1) snapshots of `name`, never one a live build or the
        node's current rebuild pins. Returns the deleted ids."""
        if keep < 1:
            raise InputError("--keep: at least 1 (the latest snapshot is never pruned)")
        with self._writing() as s:
            row = self._row(s, name)
            ids = list(s.scalars(select(SnapshotRow.id).where(SnapshotRow.node_id == row.id)
                                 .order_by(SnapshotRow.id.desc())))
            pinned = set(s.scalars(select(BuildRow.snapshot_id).where(BuildRow.node_id == row.id,
                                                                      BuildRow.ended_at.is_(None))))
            pinned.add((row.data or {}).get("snapshot_id"))
            doomed = [i for i in ids[keep:] if i not in pinned]
            for i in doomed:
                s.delete(s.get(SnapshotRow, i))
                self._facts.pop(i, None)
            return doomed

    # -- builds and tokens --------------------------------------------------------------------
    def mark_ks_fetched(self, build_id: int, event: str | None = None) -> None:
        """Record the build's first kickstart fetch, and the `event` message (kind ks-fetched) in the
        same transaction."""
        with self._writing() as s:
            now = utcnow()
            s.execute(update(BuildRow).where(BuildRow.id == build_id, BuildRow.ks_fetched_at.is_(None))
                      .values(ks_fetched_at=now))
            if event:
                node_id = s.scalar(select(BuildRow.node_id).where(BuildRow.id == build_id))
                s.add(EventRow(node_id=node_id, ts=now, kind="ks-fetched", message=event))

    def events(self, name: str) -> list[Event]:
        with self._session() as s:
            row = self._row(s, name)
            rows = s.scalars(select(EventRow).where(EventRow.node_id == row.id).order_by(EventRow.id))
            return [Event(r.ts, r.kind, r.message) for r in rows]

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _row(s: Session, name: str, lock: bool = False) -> NodeRow:
        q = select(NodeRow).where(NodeRow.name == name)
        row = s.scalar(q.with_for_update() if lock else q)
        if row is None:
            raise NotFound(f"node {name!r} is not in the inventory")
        return row

    @staticmethod
    def _latest(s: Session, node_id: int) -> SnapshotRow | None:
        return s.scalar(select(SnapshotRow).where(SnapshotRow.node_id == node_id)
                        .order_by(SnapshotRow.id.desc()).limit(1))

    def _add_snapshot(self, s: Session, node_id: int, facts: Facts, source: str, now: datetime,
                      name: str) -> SnapshotRow:
        self._index_addresses(s, node_id, facts, name)
        data = facts_json(facts)
        snap = SnapshotRow(node_id=node_id, created_at=now, source=source,
                           digest=hashlib.sha256(data.encode()).hexdigest(), data=data)
        s.add(snap)
        s.flush()
        return snap

    def _parsed(self, r: SnapshotRow) -> Facts:
        facts = self._facts.get(r.id)
        if facts is None:
            facts = self._parse_facts(r.id, r.data)
        return facts

    def _parse_facts(self, snapshot_id: int, text: str) -> Facts:
        if len(self._facts) > 20000:
            self._facts.clear()
        facts = self._facts[snapshot_id] = Facts.model_validate_json(text)
        return facts

    def _snapshot(self, name: str, r: SnapshotRow) -> Snapshot:
        return Snapshot(r.id, name, r.created_at, r.source, self._parsed(r))

    def _record(self, s: Session, r: NodeRow) -> NodeRecord:
        # the latest snapshot's id first: its facts are parsed once per process, so its (large)
        # JSON text is loaded only the first time
        snap_id = s.scalar(select(SnapshotRow.id).where(SnapshotRow.node_id == r.id)
                           .order_by(SnapshotRow.id.desc()).limit(1))
        facts = None
        if snap_id is not None:
            facts = self._facts.get(snap_id) or self._parsed(s.get(SnapshotRow, snap_id))
        node = Node(name=r.name, fqdn=r.fqdn, cluster=r.cluster, profile=r.profile, bmc=r.bmc, facts=facts)
        return NodeRecord(node, r.state, snap_id, r.updated_at)

    @staticmethod
    def _build(name: str, b: BuildRow) -> Build:
        return Build(b.id, name, b.nonce, b.snapshot_id, b.created_at, b.expires_at, b.ks_fetched_at,
                     b.ended_at, b.end_reason, b.boot_local_at)

    @staticmethod
    def _end_builds(s: Session, node_id: int, now: datetime, reason: str) -> None:
        s.execute(update(BuildRow).where(BuildRow.node_id == node_id, BuildRow.ended_at.is_(None))
                  .values(ended_at=now, end_reason=reason))


def _sqlite_connect(dbapi_conn, _record) -> None:
    # pysqlite begins transactions only before DML, so a SELECT then UPDATE is not atomic; take
    # transaction control away from the driver and let _sqlite_begin emit BEGIN (SQLAlchemy's
    # documented pysqlite recipe).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn) -> None:
    options = conn.get_execution_options()
    if options.get("provision_read"):  # one statement: autocommit, its own snapshot
        return
    # straight to the driver: through exec_driver_sql this one statement cost as much as the rest
    # of a compare-and-set, and every write runs it
    conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if options.get("provision_write") else "BEGIN")
