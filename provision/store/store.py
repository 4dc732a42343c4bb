"""The store: the only module that speaks SQL (SQLAlchemy 2 Core; SQLite by default, PostgreSQL by
URL). One class, made of per-topic parts on one Database; every write goes through `Database.write` (db.py) in one transaction, and every
change of what a node is served through its one generation bump (`Tx.bump`).

What it holds: nodes (the inventory, their state and step data), facts snapshots (append-only),
the MAC/IP index (every MAC and IP of each node's latest facts, unique across the store), builds
and their tokens' digests, events and uploaded logs, one-time collection tokens, rebuild runs and
their leases, and imported media. The state machine's rules are not here (workflow/machine.py):
a compare-and-set writes what it is given."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from ..domain import Facts, Node, check_unique
from ..errors import Conflict, InputError, NotFound, ProvisionError
from .accounts import Accounts
from .audit import AuditTrail
from .builds import Builds
from .catalogue import MediaCatalogue
from .clock import utcnow
from .db import Database
from .fleet import FleetView
from .journal import Journal
from .models import Base
from .records import Build, ImportResult, NodeRecord, Snapshot
from .runs import Runs
from .schema import NoDatabase, OldSchema, ensure_schema
from .states import NodeStates
from .tables import (
    _BUILD,
    _LATEST,
    META,
    A,
    B,
    C,
    E,
    L,
    N,
    S,
    build_of,
    facts_json,
    make_url_safe,
    missing,
    node_row_id,
    wanted_addresses,
)


class Store(NodeStates, FleetView, Journal, Builds, Accounts, Runs, MediaCatalogue, AuditTrail):
    """The store. Nodes, their facts snapshots and the MAC/IP index are here; the parts it is made
    of hold the rest, each on the same Database and nothing else: node state and step data
    (states.py), events and logs (journal.py), builds and collection tokens (builds.py), console
    sessions and API tokens (accounts.py), rebuild runs (runs.py), media (catalogue.py) and the
    audit trail (audit.py)."""

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
            raise missing(name)
        return gen

    # -- nodes ----------------------------------------------------------------------------------
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
                raise missing(name)
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
            node_id = node_row_id(tx.conn, name, lock=True)
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

    def remove_node(self, name: str, expect: str) -> None:
        """Delete `name` and everything stored of it (snapshots, builds, events, logs, collection
        tokens, addresses) in one transaction, if it is still in state `expect` (Conflict if not)."""
        with self.db.write() as tx:
            r = tx.execute(select(N.c.id, N.c.state).where(N.c.name == name).with_for_update()).first()
            if r is None:
                raise missing(name)
            if r.state != expect:
                raise Conflict(f"node {name!r}: moved to {r.state} meanwhile; nothing was removed")
            for t in (A, C, L, E, B, S):
                tx.execute(delete(t).where(t.c.node_id == r.id))
            tx.execute(delete(N).where(N.c.id == r.id))
            tx.changed[name] = tx.bump({})  # this process's boot-config cache forgets it
        self._records.pop(name, None)

    # -- the MAC/IP index -----------------------------------------------------------------------
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
            node_id = node_row_id(tx.conn, name, lock=True)
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
            node_id = node_row_id(conn, name)
            q = select(S.c.id, S.c.created_at, S.c.source, S.c.node_id)
            r = conn.execute(q.where(S.c.node_id == node_id).order_by(S.c.id.desc()).limit(1) if snapshot_id is None
                             else q.where(S.c.id == snapshot_id)).first()
            if r is None or r.node_id != node_id:
                raise NotFound(f"node {name!r}: no facts snapshot" + (f" {snapshot_id}" if snapshot_id else ""))
            return Snapshot(r.id, name, r.created_at, r.source, self._facts_of(conn, r.id))

    def snapshots(self, name: str) -> list[Snapshot]:
        with self.db.read() as conn:
            node_id = node_row_id(conn, name)
            rows = conn.execute(select(S.c.id, S.c.created_at, S.c.source).where(S.c.node_id == node_id)
                                .order_by(S.c.id)).all()
            return [Snapshot(r.id, name, r.created_at, r.source, self._facts_of(conn, r.id)) for r in rows]

    def render_view(self, name: str, snapshot_id: int | None = None) -> tuple[NodeRecord, Snapshot, Build | None]:
        """Everything a render needs, read together: the node, its facts snapshot (latest or
        named; NotFound when none) and its live build (or None)."""
        with self.db.read() as conn:
            r = conn.execute(select(N, _LATEST.label("snapshot_id")).where(N.c.name == name)).first()
            if r is None:
                raise missing(name)
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
        build = build_of(b) if b is not None else None
        return record, snapshot, build if build and build.live() else None

    def prune_snapshots(self, name: str, keep: int) -> list[int]:
        """Delete all but the newest `keep` (>= 1) snapshots of `name`, never one a live build or the
        node's current rebuild pins. Returns the deleted ids."""
        if keep < 1:
            raise InputError("--keep: at least 1 (the latest snapshot is never pruned)")
        with self.db.write() as tx:
            node_id = node_row_id(tx.conn, name, lock=True)
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
