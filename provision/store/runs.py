"""Persistence of the rebuild state machine: node state (compare-and-set), step data, uploaded
logs and rebuild runs. Mixed into Store; uses its sessions and helpers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update

from .. import tokens
from ..errors import NotFound
from .clock import utcnow
from .models import CollectRow, EventRow, LogRow, NodeRow, RebuildRow


@dataclass(frozen=True)
class NodeState:
    name: str
    cluster: str
    state: str
    step_started_at: datetime | None
    failed_step: str | None
    fail_reason: str | None
    rebuild_id: int | None
    data: dict


@dataclass(frozen=True)
class Rebuild:
    id: int
    created_at: datetime
    nodes: list[str]
    options: dict
    status: str



class RunsMixin:
    def node_state(self, name: str) -> NodeState:
        """The most frequent read of a rebuild (every loop of every runner): plain columns, no ORM
        entity, one indexed query."""
        with self.engine.connect() as conn:
            r = conn.execute(select(NodeRow.name, NodeRow.cluster, NodeRow.state, NodeRow.step_started_at,
                                    NodeRow.failed_step, NodeRow.fail_reason, NodeRow.rebuild_id, NodeRow.data)
                             .where(NodeRow.name == name)).first()
        if r is None:
            raise NotFound(f"node {name!r} is not in the inventory")
        return NodeState(*r[:7], dict(r[7] or {}))

    def compare_and_set_state(self, name: str, expected: str, new: str, message: str, *,
                              failed_step: str | None = None, reason: str | None = None,
                              rebuild_id: int | None = None, data: dict | None = None,
                              replace_data: bool = False) -> bool:
        """Move `name` from `expected` to `new` in one transaction with its event row; False (and
        nothing written) when the node is no longer in `expected`."""
        now = utcnow()
        with self._writing() as s:  # plain statements, no ORM entities: every step of every node runs this
            conn = s.connection()
            r = conn.execute(select(NodeRow.id, NodeRow.state, NodeRow.data).where(NodeRow.name == name)
                             .with_for_update()).first()  # the node row, then the counter (_bump's order)
            if r is None:
                raise NotFound(f"node {name!r} is not in the inventory")
            if r.state != expected:
                return False
            values: dict = {"state": new, "step_started_at": now, "updated_at": now}
            if new == "failed":
                values.update(failed_step=failed_step, fail_reason=reason)
            elif expected == "failed" or new == "preflight":
                values.update(failed_step=None, fail_reason=None)
            if rebuild_id is not None:
                values["rebuild_id"] = rebuild_id
            if data is not None:
                values["data"] = _merge({} if replace_data else (r.data or {}), data)
            values["generation"] = generation = self._next_generation(conn)
            conn.execute(update(NodeRow).where(NodeRow.id == r.id).values(**values))
            conn.execute(insert(EventRow).values(node_id=r.id, ts=now, kind="transition", message=message))
            s.info.setdefault("changed", {})[name] = generation
            return True

    def update_data(self, name: str, **values) -> dict:
        """Merge step data (None removes a key); returns the new data."""
        with self._writing() as s:
            r = self._row(s, name, lock=True)
            r.data = _merge(r.data, values)
            return dict(r.data)

    def events_since(self, after: int, limit: int = 500) -> list[tuple[int, datetime, str, str, str]]:
        """(id, ts, node, kind, message) of every node's events with an id above `after`, oldest
        first: what a live feed sends (one indexed range query; ids only grow)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(EventRow.id, EventRow.ts, NodeRow.name, EventRow.kind, EventRow.message)
                                .join(NodeRow, NodeRow.id == EventRow.node_id)
                                .where(EventRow.id > after).order_by(EventRow.id).limit(limit)).all()
        return [tuple(r) for r in rows]

    def last_event_id(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(EventRow.id))).scalar() or 0

    def add_log(self, name: str, kind: str, text: str) -> None:
        with self._writing() as s:
            s.add(LogRow(node_id=self._row(s, name).id, ts=utcnow(), kind=kind, text=text))

    def logs(self, name: str) -> list[tuple[datetime, str, str]]:
        with self._session() as s:
            row = self._row(s, name)
            return [(r.ts, r.kind, r.text) for r in s.scalars(select(LogRow).where(LogRow.node_id == row.id)
                                                                 .order_by(LogRow.id))]

    # -- fact collection tokens (one-time) --------------------------------------------------
    def create_collection(self, name: str, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(24)
        now = utcnow()
        with self._writing() as s:
            s.add(CollectRow(node_id=self._row(s, name).id, token_digest=tokens.digest(token), created_at=now,
                             expires_at=now + timedelta(seconds=ttl_seconds)))
        return token

    def collection_node(self, token: str, consume: bool = False) -> str | None:
        """The node a live, unused collection token belongs to (and use it up with `consume`)."""
        now = utcnow()
        with self._writing() as s:
            row = s.scalar(select(CollectRow).where(CollectRow.token_digest == tokens.digest(token)))
            if row is None or row.used_at is not None or row.expires_at <= now:
                return None
            if consume:
                row.used_at = now
            return s.get(NodeRow, row.node_id).name

    # -- rebuild runs -----------------------------------------------------------------------
    def create_rebuild(self, nodes: list[str], options: dict) -> Rebuild:
        with self._writing() as s:
            r = RebuildRow(created_at=utcnow(), nodes=list(nodes), options=dict(options), status="running")
            s.add(r)
            s.flush()
            return Rebuild(r.id, r.created_at, list(r.nodes), dict(r.options), r.status)

    def rebuilds(self, status: str | None = None) -> list[Rebuild]:
        with self._session() as s:
            q = select(RebuildRow).order_by(RebuildRow.id)
            if status:
                q = q.where(RebuildRow.status == status)
            return [Rebuild(r.id, r.created_at, list(r.nodes), dict(r.options), r.status) for r in s.scalars(q)]

    def set_rebuild_status(self, rebuild_id: int, status: str) -> None:
        with self._writing() as s:
            s.get(RebuildRow, rebuild_id).status = status


def _merge(old: dict | None, new: dict) -> dict:
    out = dict(old or {})
    for k, v in new.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


