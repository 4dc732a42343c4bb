"""The store: the only module that speaks SQL (SQLAlchemy 2 Core; SQLite by default, PostgreSQL by
URL). One class; every write goes through `Database.write` (db.py) in one transaction, and every
change of what a node is served through its one generation bump (`Tx.bump`).

What it holds: nodes (the inventory, their state and step data), facts snapshots (append-only),
the MAC/IP index (every MAC and IP of each node's latest facts, unique across the store), builds
and their tokens' digests, events and uploaded logs, one-time collection tokens, rebuild runs and
their leases, and imported media. The state machine's rules are not here (workflow/machine.py):
a compare-and-set writes what it is given."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, and_, delete, func, insert, make_url, or_, select, update
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from .. import tokens
from ..domain import Facts, Node, check_unique
from ..errors import Conflict, InputError, NotFound, ProvisionError
from .clock import db_utcnow, utcnow
from .db import Database, Tx
from .models import (
    AddressRow,
    Base,
    BuildRow,
    CollectRow,
    EventRow,
    LogRow,
    MediaRow,
    MetaRow,
    NodeRow,
    RebuildRow,
    SnapshotRow,
    UiSessionRow,
    table,
)
from .records import FINISHED, Build, Event, ImportResult, Media, NodeRecord, NodeState, Rebuild, Snapshot, merge
from .schema import NoDatabase, OldSchema, ensure_schema

N, S, B, E = table(NodeRow), table(SnapshotRow), table(BuildRow), table(EventRow)
A, L, C, R, M, META = (table(AddressRow), table(LogRow), table(CollectRow), table(RebuildRow), table(MediaRow),
                       table(MetaRow))
U = table(UiSessionRow)
_STATE = (N.c.name, N.c.cluster, N.c.state, N.c.step_started_at, N.c.failed_step, N.c.fail_reason, N.c.rebuild_id,
          N.c.data, N.c.generation, N.c.last_rebuild_seconds)
_BUILD = (B.c.id, N.c.name, B.c.nonce, B.c.snapshot_id, B.c.created_at, B.c.expires_at, B.c.ks_fetched_at,
          B.c.ended_at, B.c.end_reason, B.c.boot_local_at)
_LATEST = select(func.max(S.c.id)).where(S.c.node_id == N.c.id).scalar_subquery()
KEEP = object()  # compare_and_set_state: leave failed_step and fail_reason as they are


def facts_json(facts: Facts) -> str:
    return json.dumps(facts.model_dump(mode="json"), sort_keys=True)


def facts_digest(facts: Facts) -> str:
    return hashlib.sha256(facts_json(facts).encode()).hexdigest()


def wanted_addresses(facts: Facts) -> set[tuple[str, str]]:
    """(kind, value) of every MAC and IP address in `facts`, as the index stores them."""
    return {("MAC", m) for m in facts.macs()} | {("IP address", str(a.ip)) for a in facts.addresses()}


def make_url_safe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def _state(r) -> NodeState:
    return NodeState(r.name, r.cluster, r.state, r.step_started_at, r.failed_step, r.fail_reason, r.rebuild_id,
                     dict(r.data or {}), r.generation, r.last_rebuild_seconds)


def _rebuild(r) -> Rebuild:
    return Rebuild(r.id, r.created_at, list(r.nodes), dict(r.options), r.status, r.runner or "cli", r.owner,
                   r.lease_until, r.control or "run", r.finished_at, dict(r.summary) if r.summary else None)


def _build(r) -> Build:
    return Build(r.id, r.name, r.nonce, r.snapshot_id, r.created_at, r.expires_at, r.ks_fetched_at, r.ended_at,
                 r.end_reason, r.boot_local_at)


def _media(r) -> Media:
    return Media(r.name, r.kind, r.liveimg, dict(r.files), r.size, r.source, r.imported_at)


def _missing(name: str) -> NotFound:
    return NotFound(f"node {name!r} is not in the inventory")


class Store:
    def __init__(self, url: str, *, create: bool = True, check: bool = True) -> None:
        """Opens the database, creating its schema in an empty one when `create` (else an empty or
        missing one is NoDatabase); `check`: refuse (OldSchema) one whose schema is older than this
        provision's. A path or server that cannot be used is a clean ProvisionError naming db_url
        (password masked), never a traceback. A SQLite file and its directory are private to the
        owner (0600/0700): they hold build tokens' digests and sealed OTPs."""
        try:
            self.db = Database(url, create=create)
            if check:
                ensure_schema(self.db.engine, Base.metadata, create=create)
        except NoDatabase as exc:
            where = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else make_url_safe(url)
            where = str(Path(where).absolute()) if url.startswith("sqlite:///") else where
            raise NoDatabase(f"no provision database at {where} ([server] db_url; {exc})") from None
        except OldSchema as exc:
            raise OldSchema(f"db_url {make_url_safe(url)}: {exc}") from None
        except (OSError, SQLAlchemyError, ArgumentError) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise ProvisionError(f"db_url {make_url_safe(url)}: cannot open the database: "
                                 f"{getattr(reason, 'strerror', None) or str(reason).splitlines()[0]}") from None
        self.engine = self.db.engine
        self._records: dict[str, tuple[int, NodeRecord]] = {}  # node -> (generation, its record then)
        self._facts: dict[int, Facts] = {}  # snapshots are immutable: parsed facts by snapshot id
        if check:
            self._backfill_addresses()

    def close(self) -> None:
        self.db.close()

    # -- change tracking ------------------------------------------------------------------------
    def generation(self) -> int:
        with self.db.read() as conn:
            return conn.execute(select(META.c.value).where(META.c.key == "generation")).scalar() or 0

    def changed_since(self, generation: int) -> tuple[int, dict[str, tuple[int, list[str]]]]:
        """(the current generation, {node: (its generation, its MACs)} for every node changed after
        `generation`): one indexed scan whatever the fleet size; -1 gives every node."""
        with self.db.read() as conn:
            current = conn.execute(select(META.c.value).where(META.c.key == "generation")).scalar() or 0
            rows = conn.execute(select(N.c.name, N.c.generation, A.c.value)
                                .outerjoin(A, (A.c.node_id == N.c.id) & (A.c.kind == "MAC"))
                                .where(N.c.generation > generation)).all()
        out: dict[str, tuple[int, list[str]]] = {}
        for name, gen, mac in rows:
            entry = out.setdefault(name, (gen, []))
            if mac is not None:
                entry[1].append(mac)
        return current, out

    def subscribe(self, listener: Callable[[dict[str, int]], None]) -> None:
        """`listener({node: its new generation})` runs after each commit in this process that
        changed what those nodes are served."""
        self.db.subscribe(listener)

    def change_event(self, name: str):
        """An event set whenever node `name` changes in this process: clear it, read the node, then
        wait on it, and a change made after the read is never missed."""
        return self.db.change_event(name)

    def node_generation(self, name: str) -> int:
        with self.db.read() as conn:
            gen = conn.execute(select(N.c.generation).where(N.c.name == name)).scalar()
        if gen is None:
            raise _missing(name)
        return gen

    # -- nodes ----------------------------------------------------------------------------------
    @staticmethod
    def _node_id(conn: Connection, name: str, lock: bool = False) -> int:
        q = select(N.c.id).where(N.c.name == name)
        node_id = conn.execute(q.with_for_update() if lock else q).scalar()
        if node_id is None:
            raise _missing(name)
        return node_id

    def list_nodes(self, cluster: str | None = None) -> list[NodeRecord]:
        q = select(N, _LATEST.label("snapshot_id")).order_by(N.c.name)
        if cluster:
            q = q.where(N.c.cluster == cluster)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            return [self._node_record(conn, r) for r in rows]

    def get(self, name: str, generation: int | None = None) -> NodeRecord:
        """The node's inventory entry with its latest facts (parsed once per process). With the
        `generation` the caller knows the node at (a runner's NodeState), the record read at that
        generation is reused: what it holds changes only with a new generation."""
        if generation is not None:
            hit = self._records.get(name)
            if hit is not None and hit[0] == generation:
                return hit[1]
        with self.db.read() as conn:
            r = conn.execute(select(N, _LATEST.label("snapshot_id")).where(N.c.name == name)).first()
            if r is None:
                raise _missing(name)
            record = self._node_record(conn, r)
        if len(self._records) > 20000:
            self._records.clear()
        self._records[name] = (r.generation, record)
        return record

    def _node_record(self, conn: Connection, r) -> NodeRecord:
        facts = self._facts_of(conn, r.snapshot_id) if r.snapshot_id is not None else None
        node = Node(name=r.name, fqdn=r.fqdn, cluster=r.cluster, profile=r.profile, bmc=r.bmc, facts=facts)
        return NodeRecord(node, r.state, r.snapshot_id, r.updated_at)

    def _facts_of(self, conn: Connection, snapshot_id: int) -> Facts:
        """A snapshot's facts: its (large) JSON is read and parsed once per process."""
        facts = self._facts.get(snapshot_id)
        if facts is None:
            text = conn.execute(select(S.c.data).where(S.c.id == snapshot_id)).scalar_one()
            if len(self._facts) > 20000:
                self._facts.clear()
            facts = self._facts[snapshot_id] = Facts.model_validate_json(text)
        return facts

    def set_state(self, name: str, state: str) -> None:
        with self.db.write() as tx:
            node_id = self._node_id(tx.conn, name, lock=True)
            tx.execute(update(N).where(N.c.id == node_id).values(state=state))
            tx.bump({node_id: name})

    def import_nodes(self, nodes: list[Node]) -> ImportResult:
        """Create or update nodes in one transaction, in a constant number of queries (5,000 nodes
        import in seconds); inline facts that differ from the latest snapshot become a new snapshot
        (source 'file'). Names, FQDNs, MACs and IPs are checked against each other and every stored
        node first; on any clash nothing is written. Nothing stored is deleted."""
        names = {n.name for n in nodes}
        now = utcnow()
        created, updated, snaps = [], [], []
        with self.db.write() as tx:
            stored = {r.name: r for r in tx.execute(select(N.c.id, N.c.name, N.c.fqdn))}
            check_unique(nodes, [(r.name, r.fqdn, None) for r in stored.values() if r.name not in names],
                         claimed=self._claimed(tx.conn, names))
            latest_ids = select(func.max(S.c.id)).group_by(S.c.node_id)
            digests = dict(tx.execute(select(S.c.node_id, S.c.digest).where(S.c.id.in_(latest_ids))).all())
            ids: dict[str, int] = {}
            try:
                for node in nodes:
                    values = {"fqdn": node.fqdn, "cluster": node.cluster, "profile": node.profile,
                              "bmc": node.bmc.model_dump(mode="json"), "updated_at": now}
                    if node.name in stored:
                        ids[node.name] = stored[node.name].id
                        tx.execute(update(N).where(N.c.id == ids[node.name]).values(**values))
                        updated.append(node.name)
                    else:
                        ids[node.name] = tx.execute(insert(N).values(name=node.name, created_at=now, state="ready",
                                                                     data={}, **values).returning(N.c.id)).scalar_one()
                        created.append(node.name)
            except IntegrityError:
                raise InputError("inventory: a name or fqdn collides with a stored node") from None
            snap_rows, addr_rows = [], []
            for node in nodes:
                if node.facts is None:
                    continue
                node_id, data = ids[node.name], facts_json(node.facts)
                digest = hashlib.sha256(data.encode()).hexdigest()
                if digests.get(node_id) == digest:
                    continue
                if node.name in stored:
                    tx.execute(delete(A).where(A.c.node_id == node_id))
                addr_rows += [{"kind": k, "value": v, "node_id": node_id} for k, v in wanted_addresses(node.facts)]
                snap_rows.append({"node_id": node_id, "created_at": now, "source": "file", "digest": digest,
                                  "data": data})
                snaps.append(node.name)
            for table, rows in ((S, snap_rows), (A, addr_rows)):
                if rows:
                    tx.execute(insert(table), rows)  # one executemany each (checked above, all at once)
            tx.lock_nodes(ids.values())
            tx.bump({i: n for n, i in ids.items()})
        return ImportResult(created, updated, snaps)

    # -- the MAC/IP index -----------------------------------------------------------------------
    def remove_node(self, name: str, expect: str) -> None:
        """Delete `name` and everything stored of it (snapshots, builds, events, logs, collection
        tokens, addresses) in one transaction, if it is still in state `expect` (Conflict if not)."""
        with self.db.write() as tx:
            r = tx.execute(select(N.c.id, N.c.state).where(N.c.name == name).with_for_update()).first()
            if r is None:
                raise _missing(name)
            if r.state != expect:
                raise Conflict(f"node {name!r}: moved to {r.state} meanwhile; nothing was removed")
            for t in (A, C, L, E, B, S):
                tx.execute(delete(t).where(t.c.node_id == r.id))
            tx.execute(delete(N).where(N.c.id == r.id))
            tx.changed[name] = tx.bump({})  # this process's boot-config cache forgets it
        self._records.pop(name, None)

    def node_for_mac(self, mac: str) -> str | None:
        """The node whose latest facts have this MAC: one indexed query, whatever the fleet size."""
        with self.db.read() as conn:
            return conn.execute(select(N.c.name).join(A, A.c.node_id == N.c.id)
                                .where(A.c.kind == "MAC", A.c.value == mac)).scalar()

    def boot_lookup(self, mac: str) -> tuple[str, int] | None:
        """(node, its generation) for a MAC, in one indexed query; None for a MAC no node has."""
        with self.db.read() as conn:
            row = conn.execute(select(N.c.name, N.c.generation).join(A, A.c.node_id == N.c.id)
                               .where(A.c.kind == "MAC", A.c.value == mac)).first()
        return (row[0], row[1]) if row else None

    @staticmethod
    def _index_addresses(conn: Connection, node_id: int, facts: Facts, name: str) -> None:
        """Replace the node's addresses, refusing (InputError naming both nodes) any another node has."""
        wanted = wanted_addresses(facts)
        if wanted:
            taken = conn.execute(select(A.c.kind, A.c.value, N.c.name).join(N, A.c.node_id == N.c.id)
                                 .where(A.c.node_id != node_id,
                                        or_(*(and_(A.c.kind == k, A.c.value.in_([v for k2, v in wanted if k2 == k]))
                                              for k in {k for k, _ in wanted})))).all()
            clashes = sorted(f"node {name!r}: {k} {v} is also used by node {owner!r}" for k, v, owner in taken
                             if (k, v) in wanted)
            if clashes:
                raise InputError("\n".join(clashes))
        conn.execute(delete(A).where(A.c.node_id == node_id))
        if wanted:
            conn.execute(insert(A), [{"kind": k, "value": v, "node_id": node_id} for k, v in sorted(wanted)])

    @staticmethod
    def _claimed(conn: Connection, excluding: set[str]) -> list[tuple[str, str, str]]:
        """(kind, value, owner) of every stored address of the nodes not in `excluding`: one query."""
        return [(k, v, n) for k, v, n in conn.execute(select(A.c.kind, A.c.value, N.c.name)
                                                       .join(N, A.c.node_id == N.c.id)) if n not in excluding]

    def _backfill_addresses(self) -> None:
        """Databases from before the address index: fill it from every node's latest facts."""
        with self.db.read() as conn:
            if conn.execute(select(func.count()).select_from(A)).scalar() or not conn.execute(
                    select(func.count()).select_from(S)).scalar():
                return
        with self.db.write() as tx:
            for node_id, name, snap_id in tx.execute(select(N.c.id, N.c.name, _LATEST.label("s"))).all():
                if snap_id is None:
                    continue
                try:
                    with tx.conn.begin_nested():
                        self._index_addresses(tx.conn, node_id, self._facts_of(tx.conn, snap_id), name)
                except InputError:
                    pass  # an old clash stays visible to the next write of either node

    # -- facts snapshots (append-only) ----------------------------------------------------------
    def add_snapshot(self, name: str, facts: Facts, source: str) -> Snapshot:
        """Every capture path (engine, node upload, file, API) ends here: the MACs and IPs are checked
        against every other node's in the same transaction (InputError names both nodes)."""
        now = utcnow()
        with self.db.write() as tx:
            node_id = self._node_id(tx.conn, name, lock=True)
            self._index_addresses(tx.conn, node_id, facts, name)
            data = facts_json(facts)
            snap_id = tx.execute(insert(S).values(node_id=node_id, created_at=now, source=source, data=data,
                                                  digest=hashlib.sha256(data.encode()).hexdigest())
                                 .returning(S.c.id)).scalar_one()
            tx.bump({node_id: name})
        self._facts[snap_id] = facts
        return Snapshot(snap_id, name, now, source, facts)

    def snapshot(self, name: str, snapshot_id: int | None = None) -> Snapshot:
        """The named snapshot of `name`, or its latest; NotFound when there is none."""
        with self.db.read() as conn:
            node_id = self._node_id(conn, name)
            q = select(S.c.id, S.c.created_at, S.c.source, S.c.node_id)
            r = conn.execute(q.where(S.c.node_id == node_id).order_by(S.c.id.desc()).limit(1) if snapshot_id is None
                             else q.where(S.c.id == snapshot_id)).first()
            if r is None or r.node_id != node_id:
                raise NotFound(f"node {name!r}: no facts snapshot" + (f" {snapshot_id}" if snapshot_id else ""))
            return Snapshot(r.id, name, r.created_at, r.source, self._facts_of(conn, r.id))

    def snapshots(self, name: str) -> list[Snapshot]:
        with self.db.read() as conn:
            node_id = self._node_id(conn, name)
            rows = conn.execute(select(S.c.id, S.c.created_at, S.c.source).where(S.c.node_id == node_id)
                                .order_by(S.c.id)).all()
            return [Snapshot(r.id, name, r.created_at, r.source, self._facts_of(conn, r.id)) for r in rows]

    def render_view(self, name: str, snapshot_id: int | None = None) -> tuple[NodeRecord, Snapshot, Build | None]:
        """Everything a render needs, read together: the node, its facts snapshot (latest or
        named; NotFound when none) and its live build (or None)."""
        with self.db.read() as conn:
            r = conn.execute(select(N, _LATEST.label("snapshot_id")).where(N.c.name == name)).first()
            if r is None:
                raise _missing(name)
            want = r.snapshot_id if snapshot_id is None else snapshot_id
            snap = conn.execute(select(S.c.id, S.c.created_at, S.c.source, S.c.node_id)
                                .where(S.c.id == want)).first() if want is not None else None
            if snap is None or snap.node_id != r.id:
                raise NotFound(f"node {name!r}: no facts snapshot" + (f" {snapshot_id}" if snapshot_id else "")
                               + " (capture or import facts first)")
            b = conn.execute(select(*_BUILD).join(N, N.c.id == B.c.node_id)
                             .where(B.c.node_id == r.id, B.c.ended_at.is_(None)).order_by(B.c.id.desc()).limit(1)).first()
            record = self._node_record(conn, r)
            snapshot = Snapshot(snap.id, name, snap.created_at, snap.source, self._facts_of(conn, snap.id))
        build = _build(b) if b is not None else None
        return record, snapshot, build if build and build.live() else None

    def prune_snapshots(self, name: str, keep: int) -> list[int]:
        """Delete all but the newest `keep` (>= 1) snapshots of `name`, never one a live build or the
        node's current rebuild pins. Returns the deleted ids."""
        if keep < 1:
            raise InputError("--keep: at least 1 (the latest snapshot is never pruned)")
        with self.db.write() as tx:
            node_id = self._node_id(tx.conn, name, lock=True)
            ids = list(tx.execute(select(S.c.id).where(S.c.node_id == node_id).order_by(S.c.id.desc())).scalars())
            pinned = set(tx.execute(select(B.c.snapshot_id).where(B.c.node_id == node_id,
                                                                  B.c.ended_at.is_(None))).scalars())
            data = tx.execute(select(N.c.data).where(N.c.id == node_id)).scalar()
            pinned.add((data or {}).get("snapshot_id"))
            doomed = [i for i in ids[keep:] if i not in pinned]
            if doomed:
                tx.execute(delete(S).where(S.c.id.in_(doomed)))
        for i in doomed:
            self._facts.pop(i, None)
        return doomed

    # -- state and step data (the state machine's persistence) ----------------------------------
    def node_state(self, name: str) -> NodeState:
        """The most frequent read of a rebuild (every loop of every runner): one indexed query."""
        with self.db.read() as conn:
            r = conn.execute(select(*_STATE).where(N.c.name == name)).first()
        if r is None:
            raise _missing(name)
        return _state(r)

    def node_states(self, names: list[str]) -> dict[str, NodeState]:
        """Many nodes' states in one query (a batch's scheduler asks about all it may start)."""
        if not names:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(select(*_STATE).where(N.c.name.in_(list(names)))).all()
        return {r.name: _state(r) for r in rows}

    def compare_and_set_state(self, name: str, expected: str, new: str, message: str, *,
                              failure=KEEP, rebuild_id: int | None = None, data: dict | None = None,
                              replace_data: bool = False, events: Sequence[tuple[str, str]] = (),
                              wake: bool = True, clock: str | None = None) -> NodeState | None:
        """Move `name` from `expected` to `new` in one transaction with its event row (and
        `events`, (kind, message) pairs a step recorded on its way); the new NodeState, or None
        (and nothing written) when the node is no longer in `expected`. `failure`: the
        (failed_step, fail_reason) to store, or KEEP. A move changes nothing the node is served
        (its builds do), so its generation stays and no cached config is dropped. `wake=False`:
        the node's waiter in this process is the caller, and is not woken by it. `clock`: "start"
        notes that a rebuild starts now, "finish" records how long the one that started took."""
        now = utcnow()
        with self.db.write() as tx:
            r = tx.execute(select(N.c.id, N.c.rebuild_started_at, *_STATE)
                           .where(N.c.name == name).with_for_update()).first()
            if r is None:
                raise _missing(name)
            if r.state != expected:
                return None
            timing: dict = {}
            last = r.last_rebuild_seconds
            if clock == "start":
                timing["rebuild_started_at"] = now
            elif clock == "finish" and r.rebuild_started_at is not None:
                last = timing["last_rebuild_seconds"] = (now - r.rebuild_started_at).total_seconds()
            fstep, freason = (r.failed_step, r.fail_reason) if failure is KEEP else failure
            values = dict(r.data or {})
            if data is not None:
                values = merge({} if replace_data else values, data)
            rid = rebuild_id if rebuild_id is not None else r.rebuild_id
            tx.execute(update(N).where(N.c.id == r.id).values(
                state=new, step_started_at=now, updated_at=now, failed_step=fstep, fail_reason=freason,
                rebuild_id=rid, data=values, **timing))
            tx.execute(insert(E), [{"node_id": r.id, "ts": now, "kind": k, "message": m}
                                   for k, m in [*events, ("transition", message)]])
            if wake:
                tx.moved.add(name)
        return NodeState(name, r.cluster, new, now, fstep, freason, rid, values, r.generation, last)

    def update_data(self, name: str, **values) -> dict:
        """Merge step data (None removes a key); returns the new data."""
        return self.record_step(name, values)

    def record_step(self, name: str, values: dict, events: Sequence[tuple[str, str]] = ()) -> dict:
        """Merge step data (None removes a key) and add (kind, message) events in one transaction;
        returns the new data."""
        with self.db.write() as tx:
            r = tx.execute(select(N.c.id, N.c.data).where(N.c.name == name).with_for_update()).first()
            if r is None:
                raise _missing(name)
            data = merge(r.data, values)
            tx.execute(update(N).where(N.c.id == r.id).values(data=data))
            if events:
                now = utcnow()
                tx.execute(insert(E), [{"node_id": r.id, "ts": now, "kind": k, "message": m} for k, m in events])
        return dict(data)

    # -- events and logs --------------------------------------------------------------------------
    def add_event(self, name: str, kind: str, message: str) -> None:
        with self.db.write() as tx:
            node_id = self._node_id(tx.conn, name)
            tx.execute(insert(E).values(node_id=node_id, ts=utcnow(), kind=kind, message=message))

    def events(self, name: str, limit: int | None = None) -> list[Event]:
        """The node's events, oldest first; with `limit`, only the newest `limit` of them."""
        with self.db.read() as conn:
            node_id = self._node_id(conn, name)
            q = select(E.c.ts, E.c.kind, E.c.message).where(E.c.node_id == node_id)
            rows = (conn.execute(q.order_by(E.c.id)).all() if limit is None
                    else list(reversed(conn.execute(q.order_by(E.c.id.desc()).limit(limit)).all())))
        return [Event(r.ts, r.kind, r.message) for r in rows]

    def event_count(self, name: str) -> int:
        with self.db.read() as conn:
            node_id = self._node_id(conn, name)
            return conn.execute(select(func.count()).select_from(E).where(E.c.node_id == node_id)).scalar_one()

    def events_since(self, after: int, limit: int = 500) -> list[tuple[int, datetime, str, str, str]]:
        """(id, ts, node, kind, message) of every node's events with an id above `after`, oldest
        first: what a live feed sends (one indexed range query; ids only grow)."""
        with self.db.read() as conn:
            rows = conn.execute(select(E.c.id, E.c.ts, N.c.name, E.c.kind, E.c.message)
                                .join(N, N.c.id == E.c.node_id)
                                .where(E.c.id > after).order_by(E.c.id).limit(limit)).all()
        return [tuple(r) for r in rows]

    def last_event_id(self) -> int:
        with self.db.read() as conn:
            return conn.execute(select(func.max(E.c.id))).scalar() or 0

    def add_log(self, name: str, kind: str, text: str) -> None:
        with self.db.write() as tx:
            tx.execute(insert(L).values(node_id=self._node_id(tx.conn, name), ts=utcnow(), kind=kind, text=text))

    def logs(self, name: str) -> list[tuple[datetime, str, str]]:
        with self.db.read() as conn:
            node_id = self._node_id(conn, name)
            return [(r.ts, r.kind, r.text) for r in conn.execute(select(L.c.ts, L.c.kind, L.c.text)
                                                                 .where(L.c.node_id == node_id).order_by(L.c.id))]

    # -- builds and tokens ------------------------------------------------------------------------
    def active_build(self, name: str) -> Build | None:
        with self.db.read() as conn:
            r = conn.execute(select(*_BUILD).join(N, N.c.id == B.c.node_id)
                             .where(N.c.name == name, B.c.ended_at.is_(None)).order_by(B.c.id.desc()).limit(1)).first()
            if r is None:
                self._node_id(conn, name)
        build = _build(r) if r is not None else None
        return build if build and build.live() else None

    def build_by_digest(self, digest: str) -> Build | None:
        with self.db.read() as conn:
            r = conn.execute(select(*_BUILD).join(N, N.c.id == B.c.node_id).where(B.c.token_digest == digest)).first()
        return _build(r) if r is not None else None

    def arm(self, name: str, key: str, ttl_seconds: int, snapshot_id: int | None = None) -> tuple[Build, str]:
        """Start a build: a fresh nonce and the token derived from it with the server `key`
        (only its digest is stored); ends any earlier build. Returns the build and its token."""
        now = utcnow()
        nonce = tokens.new_nonce()
        token = tokens.derive(key, nonce)
        expires = now + timedelta(seconds=ttl_seconds)
        with self.db.write() as tx:
            node_id = self._node_id(tx.conn, name, lock=True)
            self._end_builds(tx, node_id, now, "superseded")
            build_id = tx.execute(insert(B).values(node_id=node_id, nonce=nonce, token_digest=tokens.digest(token),
                                                   snapshot_id=snapshot_id, created_at=now, expires_at=expires)
                                  .returning(B.c.id)).scalar_one()
            tx.bump({node_id: name})
        return Build(build_id, name, nonce, snapshot_id, now, expires, None, None, None, None), token

    def end_build(self, name: str, reason: str) -> None:
        with self.db.write() as tx:
            node_id = self._node_id(tx.conn, name, lock=True)
            self._end_builds(tx, node_id, utcnow(), reason)
            tx.bump({node_id: name})

    @staticmethod
    def _end_builds(tx: Tx, node_id: int, now: datetime, reason: str) -> None:
        tx.execute(update(B).where(B.c.node_id == node_id, B.c.ended_at.is_(None)).values(ended_at=now,
                                                                                       end_reason=reason))

    def set_boot_local(self, build_id: int) -> bool:
        """Switch a build's boot configs to local boot (the token stays valid). True if it changed."""
        with self.db.write() as tx:
            node = tx.execute(select(N.c.id, N.c.name).join(B, N.c.id == B.c.node_id).where(B.c.id == build_id)).first()
            if node is None:
                raise NotFound(f"build {build_id} does not exist")
            tx.lock_nodes([node.id])
            if not tx.execute(update(B).where(B.c.id == build_id, B.c.boot_local_at.is_(None))
                              .values(boot_local_at=utcnow())).rowcount:
                return False
            tx.bump({node.id: node.name})
            return True

    def mark_ks_fetched(self, build_id: int, event: str | None = None) -> None:
        """Record the build's first kickstart fetch, and the `event` message (kind ks-fetched) in the
        same transaction."""
        now = utcnow()
        with self.db.write() as tx:
            tx.execute(update(B).where(B.c.id == build_id, B.c.ks_fetched_at.is_(None)).values(ks_fetched_at=now))
            if event:
                node_id = tx.execute(select(B.c.node_id).where(B.c.id == build_id)).scalar()
                tx.execute(insert(E).values(node_id=node_id, ts=now, kind="ks-fetched", message=event))

    # -- fact collection tokens (one-time) --------------------------------------------------------
    def create_collection(self, name: str, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(24)
        now = utcnow()
        with self.db.write() as tx:
            tx.execute(insert(C).values(node_id=self._node_id(tx.conn, name), token_digest=tokens.digest(token),
                                        created_at=now, expires_at=now + timedelta(seconds=ttl_seconds)))
        return token

    def collection_node(self, token: str, consume: bool = False) -> str | None:
        """The node a live, unused collection token belongs to (and use it up with `consume`)."""
        now = utcnow()
        with self.db.write() as tx:
            r = tx.execute(select(C.c.id, C.c.used_at, C.c.expires_at, N.c.name).join(N, N.c.id == C.c.node_id)
                           .where(C.c.token_digest == tokens.digest(token))).first()
            if r is None or r.used_at is not None or r.expires_at <= now:
                return None
            if consume:
                tx.execute(update(C).where(C.c.id == r.id).values(used_at=now))
            return r.name

    # -- console sessions -------------------------------------------------------------------------
    def create_ui_session(self, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(24)
        now = utcnow()
        with self.db.write() as tx:
            tx.execute(delete(U).where(U.c.expires_at < now))  # old ones go as new ones come
            tx.execute(insert(U).values(digest=tokens.digest(token), created_at=now,
                                        expires_at=now + timedelta(seconds=ttl_seconds)))
        return token

    def ui_session_live(self, token: str | None) -> bool:
        if not token:
            return False
        with self.db.read() as conn:
            r = conn.execute(select(U.c.expires_at, U.c.ended_at).where(U.c.digest == tokens.digest(token))).first()
        return r is not None and r.ended_at is None and utcnow() < r.expires_at

    def end_ui_session(self, token: str | None) -> None:
        if token:
            with self.db.write() as tx:
                tx.execute(update(U).where(U.c.digest == tokens.digest(token), U.c.ended_at.is_(None))
                           .values(ended_at=utcnow()))

    # -- rebuild runs -----------------------------------------------------------------------------
    def create_rebuild(self, nodes: list[str], options: dict, runner: str = "cli") -> Rebuild:
        """A run: "cli" runs now in the calling process; "service" is queued for a `serve`."""
        with self.db.write() as tx:
            r = tx.execute(insert(R).values(created_at=utcnow(), nodes=list(nodes), options=dict(options),
                                            runner=runner, status="running" if runner == "cli" else "queued",
                                            control="run").returning(*R.c)).one()
        return _rebuild(r)

    def rebuilds(self, status: str | None = None, runner: str | None = None) -> list[Rebuild]:
        q = select(R).order_by(R.c.id)
        if status:
            q = q.where(R.c.status == status)
        if runner:
            q = q.where(R.c.runner == runner)
        with self.db.read() as conn:
            return [_rebuild(r) for r in conn.execute(q)]

    def rebuild(self, rebuild_id: int) -> Rebuild:
        with self.db.read() as conn:
            r = conn.execute(select(R).where(R.c.id == rebuild_id)).first()
        if r is None:
            raise NotFound(f"rebuild {rebuild_id} does not exist")
        return _rebuild(r)

    def set_rebuild_status(self, rebuild_id: int, status: str, summary: dict | None = None) -> None:
        values: dict = {"status": status}
        if status in FINISHED:
            values.update(finished_at=utcnow(), summary=summary)
        with self.db.write() as tx:
            tx.execute(update(R).where(R.c.id == rebuild_id).values(**values))

    def busy_nodes(self) -> dict[str, int]:
        """Nodes named by a service run that has not ended: node -> run id."""
        out: dict[str, int] = {}
        for run in self.rebuilds(runner="service"):
            if not run.finished:
                out.update({n: run.id for n in run.nodes if n not in out})
        return out

    # -- leases on runs (the conductor's, and `rebuild --local`'s) --------------------------------
    # Leases are set and judged on the database's clock (db_utcnow), never this process's.
    def claim_rebuild(self, owner: str, lease_seconds: float) -> Rebuild | None:
        """Take the oldest service run that is queued, or running under an expired lease (its
        `serve` died), for `owner`: one compare-and-set, so two `serve` processes never both get it."""
        query = (select(R.c.id, R.c.status, R.c.lease_until)
                 .where(R.c.runner == "service", R.c.status.in_(("queued", "running"))).order_by(R.c.id))

        def free(r, now) -> bool:
            return r.status == "queued" or r.lease_until is None or r.lease_until <= now

        with self.db.read() as conn:  # every conductor asks every few seconds: a read first,
            now = db_utcnow(conn)      # the write lock only when there is one
            if not any(free(r, now) for r in conn.execute(query)):
                return None
        with self.db.write() as tx:
            now = db_utcnow(tx.conn)
            for r in tx.execute(query).all():
                if not free(r, now):
                    continue  # held
                took = tx.execute(update(R).where(R.c.id == r.id, R.c.status == r.status,
                                                  R.c.lease_until.is_(None) if r.lease_until is None
                                                  else R.c.lease_until == r.lease_until)
                                  .values(status="running", owner=owner,
                                          lease_until=now + timedelta(seconds=lease_seconds))).rowcount
                if took:
                    return _rebuild(tx.execute(select(R).where(R.c.id == r.id)).one())
        return None

    def hold_rebuild(self, rebuild_id: int, owner: str, lease_seconds: float, dead: str | None = None) -> bool:
        """A `provision rebuild --local` process takes its run (new, or one it resumes) under a lease
        as the conductor does, so a run whose process is gone shows as such and can be ended or
        taken over. `dead`: a holder known to be gone (a process of this host that no longer
        exists), taken over without waiting for its lease. False when another live holder has it."""
        with self.db.write() as tx:
            now = db_utcnow(tx.conn)
            free = ((R.c.owner.is_(None)) | (R.c.owner == owner) | (R.c.lease_until.is_(None))
                    | (R.c.lease_until <= now))
            if dead is not None:
                free = free | (R.c.owner == dead)
            return bool(tx.execute(update(R).where(R.c.id == rebuild_id, R.c.status.not_in(FINISHED), free)
                                   .values(status="running", owner=owner, control="run",
                                           lease_until=now + timedelta(seconds=lease_seconds))).rowcount)

    def runner_gone(self, run: Rebuild) -> bool:
        """A run that says it is running but whose holder's lease ran out (on the database's clock):
        its `serve` or `provision rebuild --local` process is gone."""
        if run.status != "running" or run.lease_until is None:
            return False
        with self.db.read() as conn:
            return run.lease_until <= db_utcnow(conn)

    def renew_lease(self, rebuild_id: int, owner: str, lease_seconds: float) -> str | None:
        """Extend `owner`'s lease on a run it holds; the run's control ("run", "pause", "abort"),
        or None when the lease was lost (expired and taken over)."""
        with self.db.write() as tx:
            took = tx.execute(update(R).where(R.c.id == rebuild_id, R.c.owner == owner, R.c.status == "running")
                              .values(lease_until=db_utcnow(tx.conn) + timedelta(seconds=lease_seconds))).rowcount
            if not took:
                return None
            return tx.execute(select(R.c.control).where(R.c.id == rebuild_id)).scalar()

    def release_rebuild(self, rebuild_id: int, owner: str, status: str, summary: dict | None = None) -> bool:
        """The holder ends its hold: `status` "paused" or "queued" (someone may take it again now)
        or a finished one; False if it no longer held the run."""
        values: dict = {"status": status, "owner": None, "lease_until": None}
        if status in FINISHED:
            values.update(finished_at=utcnow(), summary=summary)
        with self.db.write() as tx:
            return bool(tx.execute(update(R).where(R.c.id == rebuild_id, R.c.owner == owner)
                                   .values(**values)).rowcount)

    def control_rebuild(self, rebuild_id: int, action: str) -> Rebuild:
        """An operator's abort, pause or continue of a run. Abort and pause are carried out by the
        holder (a `serve`, or a `provision rebuild --local` process) at its next heartbeat; a paused or
        queued run, or one whose holder is gone (its lease ran out), is aborted here at once, leaving
        its nodes where they are for a retry; continue queues a paused service run again."""
        if action not in ("abort", "pause", "continue"):
            raise ValueError(action)
        with self.db.write() as tx:
            r = tx.execute(select(R).where(R.c.id == rebuild_id).with_for_update()).first()
            if r is None:
                raise NotFound(f"rebuild {rebuild_id} does not exist")
            if r.status in FINISHED:
                raise Conflict(f"rebuild {rebuild_id} has ended ({r.status})")
            gone = r.status == "running" and (r.lease_until is None or r.lease_until <= db_utcnow(tx.conn))
            values: dict
            if gone and action == "abort":
                values = {"status": "aborted", "finished_at": utcnow(), "owner": None, "lease_until": None,
                          "control": "abort", "summary": {"done": [], "failed": [], "pending": list(r.nodes),
                                                          "error": "aborted: its runner was gone (lease expired)"}}
            elif r.runner != "service" and action == "continue":
                raise Conflict(f"rebuild {rebuild_id} runs in a `provision rebuild --local` process: "
                               "continue it with `provision rebuild --resume`")
            elif gone:
                raise Conflict(f"rebuild {rebuild_id}: its runner is gone (lease expired): abort it, or take its "
                               "nodes over with `provision rebuild NODE --retry`")
            elif action == "continue":
                values = {"control": "run", **({"status": "queued"} if r.status == "paused" else {})}
            elif action == "pause":
                values = {"control": "pause"}
            else:
                values = {"control": "abort"}
                if r.status in ("queued", "paused"):
                    values.update(status="aborted", finished_at=utcnow(),
                                  summary={"done": [], "failed": [], "pending": list(r.nodes),
                                           "error": "aborted before it ran"})
            tx.execute(update(R).where(R.c.id == rebuild_id).values(**values))
            return _rebuild(tx.execute(select(R).where(R.c.id == rebuild_id)).one())

    # -- media ------------------------------------------------------------------------------------
    def add_media(self, name: str, kind: str, liveimg: str | None, files: dict[str, str], size: int,
                  source: str) -> Media:
        with self.db.write() as tx:
            if tx.execute(select(M.c.name).where(M.c.name == name)).first() is not None:
                raise InputError(f"--name: media {name!r} is already imported (media remove {name} first)")
            r = tx.execute(insert(M).values(name=name, kind=kind, liveimg=liveimg, files=files, size=size,
                                            source=source, imported_at=utcnow()).returning(*M.c)).one()
        return _media(r)

    def media(self, name: str) -> Media | None:
        with self.db.read() as conn:
            r = conn.execute(select(M).where(M.c.name == name)).first()
        return _media(r) if r else None

    def list_media(self) -> list[Media]:
        with self.db.read() as conn:
            return [_media(r) for r in conn.execute(select(M).order_by(M.c.name))]

    def remove_media(self, name: str, media_of_profile) -> list[str]:
        """Unregister `name`, unless a live build's node boots it (`media_of_profile(profile)` names
        a profile's media): then nothing changes and the nodes are returned."""
        now = utcnow()
        with self.db.write() as tx:
            if tx.execute(select(M.c.name).where(M.c.name == name)).first() is None:
                raise InputError(f"media {name!r} is not imported")
            rows = tx.execute(select(N.c.name, N.c.profile).join(B, B.c.node_id == N.c.id)
                              .where(B.c.ended_at.is_(None), B.c.expires_at > now)).all()
            users = sorted({n for n, profile in rows if media_of_profile(profile) == name})
            if not users:
                tx.execute(delete(M).where(M.c.name == name))
            return users
