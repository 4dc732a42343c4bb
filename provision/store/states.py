"""The store's side of the state machine: each node's state, step data and the compare-and-set
that moves it (workflow/machine.py decides the moves)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update

from .clock import utcnow
from .db import Database
from .records import NodeState, merge
from .tables import _STATE, KEEP, E, N, missing, node_state_of


class NodeStates:
    """State and step data (a part of Store: it uses self.db and nothing of another part)."""

    db: Database

    # -- state and step data (the state machine's persistence) ----------------------------------
    def node_state(self, name: str) -> NodeState:
        """The most frequent read of a rebuild (every loop of every runner): one indexed query."""
        with self.db.read() as conn:
            r = conn.execute(select(*_STATE).where(N.c.name == name)).first()
        if r is None:
            raise missing(name)
        return node_state_of(r)

    def node_states(self, names: list[str]) -> dict[str, NodeState]:
        """Many nodes' states in one query (a batch's scheduler asks about all it may start)."""
        if not names:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(select(*_STATE).where(N.c.name.in_(list(names)))).all()
        return {r.name: node_state_of(r) for r in rows}

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
                raise missing(name)
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
                raise missing(name)
            data = merge(r.data, values)
            tx.execute(update(N).where(N.c.id == r.id).values(data=data))
            if events:
                now = utcnow()
                tx.execute(insert(E), [{"node_id": r.id, "ts": now, "kind": k, "message": m} for k, m in events])
        return dict(data)
