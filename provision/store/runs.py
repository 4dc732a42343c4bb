"""Persistence of the rebuild state machine: node state (compare-and-set), step data, uploaded
logs and rebuild runs. Mixed into Store; uses its sessions and helpers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from .. import tokens
from ..errors import Conflict, NotFound
from .clock import db_utcnow, utcnow
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
    generation: int = 0  # of what the node is served, as last read (store.get(name, generation))


@dataclass(frozen=True)
class Rebuild:
    id: int
    created_at: datetime
    nodes: list[str]
    options: dict
    status: str
    runner: str = "cli"
    owner: str | None = None
    lease_until: datetime | None = None
    control: str = "run"
    finished_at: datetime | None = None
    summary: dict | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


FINISHED = ("done", "failed", "stopped", "aborted")  # a run in one of these never runs again


def _rebuild(r: RebuildRow) -> Rebuild:
    return Rebuild(r.id, r.created_at, list(r.nodes), dict(r.options), r.status, r.runner or "cli", r.owner,
                   r.lease_until, r.control or "run", r.finished_at, dict(r.summary) if r.summary else None)


class RunsMixin:
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
    def create_rebuild(self, nodes: list[str], options: dict, runner: str = "cli") -> Rebuild:
        """A run: "cli" runs now in the calling process; "service" is queued for a `serve`."""
        with self._writing() as s:
            r = RebuildRow(created_at=utcnow(), nodes=list(nodes), options=dict(options), runner=runner,
                           status="running" if runner == "cli" else "queued", control="run")
            s.add(r)
            s.flush()
            return _rebuild(r)

    def rebuilds(self, status: str | None = None, runner: str | None = None) -> list[Rebuild]:
        with self._session() as s:
            q = select(RebuildRow).order_by(RebuildRow.id)
            if status:
                q = q.where(RebuildRow.status == status)
            if runner:
                q = q.where(RebuildRow.runner == runner)
            return [_rebuild(r) for r in s.scalars(q)]

    def rebuild(self, rebuild_id: int) -> Rebuild:
        with self._session() as s:
            r = s.get(RebuildRow, rebuild_id)
            if r is None:
                raise NotFound(f"rebuild {rebuild_id} does not exist")
            return _rebuild(r)

    def set_rebuild_status(self, rebuild_id: int, status: str, summary: dict | None = None) -> None:
        with self._writing() as s:
            r = s.get(RebuildRow, rebuild_id)
            r.status = status
            if status in FINISHED:
                r.finished_at, r.summary = utcnow(), summary

    # -- the conductor's leases (runner "service") -------------------------------------------
    def claim_rebuild(self, owner: str, lease_seconds: float) -> Rebuild | None:
        """Take the oldest service run that is queued, or running under an expired lease (its
        `serve` died), for `owner`: one compare-and-set, so two `serve` processes never both get it.
        Leases are set and judged on the database's clock (db_utcnow), never this process's."""
        query = (select(RebuildRow.id, RebuildRow.status, RebuildRow.lease_until)
                 .where(RebuildRow.runner == "service", RebuildRow.status.in_(("queued", "running")))
                 .order_by(RebuildRow.id))

        def free(r, now) -> bool:
            return r.status == "queued" or r.lease_until is None or r.lease_until <= now

        with self.engine.connect() as conn:  # every conductor asks every few seconds: a read first,
            now = db_utcnow(conn)             # the write lock only when there is one
            if not any(free(r, now) for r in conn.execute(query)):
                return None
        with self._writing() as s:
            conn = s.connection()
            now = db_utcnow(conn)
            for r in conn.execute(query).all():
                if not free(r, now):
                    continue  # held
                took = conn.execute(update(RebuildRow)
                                    .where(RebuildRow.id == r.id, RebuildRow.status == r.status,
                                           RebuildRow.lease_until.is_(None) if r.lease_until is None
                                           else RebuildRow.lease_until == r.lease_until)
                                    .values(status="running", owner=owner,
                                            lease_until=now + timedelta(seconds=lease_seconds))).rowcount
                if took:
                    return _rebuild(s.get(RebuildRow, r.id))
        return None

    def hold_rebuild(self, rebuild_id: int, owner: str, lease_seconds: float, dead: str | None = None) -> bool:
        """A `provision rebuild --local` process takes its run (new, or one it resumes) under a lease
        as the conductor does, so a run whose process is gone shows as such and can be ended or
        taken over. `dead`: a holder known to be gone (a process of this host that no longer
        exists), taken over without waiting for its lease. False when another live holder has it."""
        with self._writing() as s:
            conn = s.connection()
            now = db_utcnow(conn)
            free = ((RebuildRow.owner.is_(None)) | (RebuildRow.owner == owner)
                    | (RebuildRow.lease_until.is_(None)) | (RebuildRow.lease_until <= now))
            if dead is not None:
                free = free | (RebuildRow.owner == dead)
            took = conn.execute(update(RebuildRow)
                                .where(RebuildRow.id == rebuild_id, RebuildRow.status.not_in(FINISHED), free)
                                .values(status="running", owner=owner, control="run",
                                        lease_until=now + timedelta(seconds=lease_seconds))).rowcount
            return bool(took)

    def runner_gone(self, run: Rebuild) -> bool:
        """A run that says it is running but whose holder's lease ran out (on the database's clock):
        its `serve` or `provision rebuild --local` process is gone."""
        if run.status != "running" or run.lease_until is None:
            return False
        with self.engine.connect() as conn:
            return run.lease_until <= db_utcnow(conn)

    def renew_lease(self, rebuild_id: int, owner: str, lease_seconds: float) -> str | None:
        """Extend `owner`'s lease on a run it holds; the run's control ("run", "pause", "abort"),
        or None when the lease was lost (expired and taken over)."""
        with self._writing() as s:
            conn = s.connection()
            took = conn.execute(update(RebuildRow)
                                .where(RebuildRow.id == rebuild_id, RebuildRow.owner == owner,
                                       RebuildRow.status == "running")
                                .values(lease_until=db_utcnow(conn) + timedelta(seconds=lease_seconds))).rowcount
            if not took:
                return None
            return conn.execute(select(RebuildRow.control).where(RebuildRow.id == rebuild_id)).scalar()

    def release_rebuild(self, rebuild_id: int, owner: str, status: str, summary: dict | None = None) -> bool:
        """The holder ends its hold: `status` "paused" or "queued" (someone may take it again now)
        or a finished one; False if it no longer held the run."""
        now = utcnow()
        values: dict = {"status": status, "owner": None, "lease_until": None}
        if status in FINISHED:
            values.update(finished_at=now, summary=summary)
        with self._writing() as s:
            return bool(s.connection().execute(update(RebuildRow).where(RebuildRow.id == rebuild_id,
                                                                        RebuildRow.owner == owner)
                                               .values(**values)).rowcount)

    def control_rebuild(self, rebuild_id: int, action: str) -> Rebuild:
        """An operator's abort, pause or continue of a run. Abort and pause are carried out by the
        holder (a `serve`, or a `provision rebuild --local` process) at its next heartbeat; a paused or
        queued run, or one whose holder is gone (its lease ran out), is aborted here at once, leaving
        its nodes where they are for a retry; continue queues a paused service run again."""
        with self._writing() as s:
            r = s.get(RebuildRow, rebuild_id, with_for_update=True)
            if r is None:
                raise NotFound(f"rebuild {rebuild_id} does not exist")
            if r.status in FINISHED:
                raise Conflict(f"rebuild {rebuild_id} has ended ({r.status})")
            gone = r.status == "running" and (r.lease_until is None or r.lease_until <= db_utcnow(s.connection()))
            if gone and action == "abort":
                r.status, r.finished_at, r.owner, r.lease_until, r.control = "aborted", utcnow(), None, None, "abort"
                r.summary = {"done": [], "failed": [], "pending": list(r.nodes),
                             "error": "aborted: its runner was gone (lease expired)"}
                s.flush()
                return _rebuild(r)
            if r.runner != "service" and action == "continue":
                raise Conflict(f"rebuild {rebuild_id} runs in a `provision rebuild --local` process: "
                               "continue it with `provision rebuild --resume`")
            if gone:
                raise Conflict(f"rebuild {rebuild_id}: its runner is gone (lease expired): abort it, or take its "
                               "nodes over with `provision rebuild NODE --retry`")
            if action == "continue":
                r.control = "run"
                if r.status == "paused":
                    r.status = "queued"
            elif action == "pause":
                r.control = "pause"
            elif action == "abort":
                r.control = "abort"
                if r.status in ("queued", "paused"):
                    r.status, r.finished_at = "aborted", utcnow()
                    r.summary = {"done": [], "failed": [], "pending": list(r.nodes), "error": "aborted before it ran"}
            else:
                raise ValueError(action)
            s.flush()
            return _rebuild(r)

    def busy_nodes(self) -> dict[str, int]:
        """Nodes named by a service run that has not ended: node -> run id."""
        out: dict[str, int] = {}
        for run in self.rebuilds(runner="service"):
            if not run.finished:
                out.update({n: run.id for n in run.nodes if n not in out})
        return out


def merge(old: dict | None, new: dict) -> dict:
    out = dict(old or {})
    for k, v in new.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


