"""What the store's parts share: the tables (SQLAlchemy Core), the columns a node's state is read
with, rows to records, and the node lookup every part starts from."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import Connection, func, make_url, select
from sqlalchemy.exc import ArgumentError

from ..domain import Facts
from ..errors import NotFound
from .models import (
    AddressRow,
    ApiTokenRow,
    AuditRow,
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
from .records import Build, Media, NodeState, Rebuild

N, S, B, E = table(NodeRow), table(SnapshotRow), table(BuildRow), table(EventRow)
A, L, C, R, M, META = (table(AddressRow), table(LogRow), table(CollectRow), table(RebuildRow), table(MediaRow),
                       table(MetaRow))
U = table(UiSessionRow)
AUDIT = table(AuditRow)
TOKENS = table(ApiTokenRow)
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


def node_state_of(r) -> NodeState:
    return NodeState(r.name, r.cluster, r.state, r.step_started_at, r.failed_step, r.fail_reason, r.rebuild_id,
                     dict(r.data or {}), r.generation, r.last_rebuild_seconds)


def rebuild_of(r) -> Rebuild:
    return Rebuild(r.id, r.created_at, list(r.nodes), dict(r.options), r.status, r.runner or "cli", r.owner,
                   r.lease_until, r.control or "run", r.finished_at, dict(r.summary) if r.summary else None)


def build_of(r) -> Build:
    return Build(r.id, r.name, r.nonce, r.snapshot_id, r.created_at, r.expires_at, r.ks_fetched_at, r.ended_at,
                 r.end_reason, r.boot_local_at)


def media_of(r) -> Media:
    return Media(r.name, r.kind, r.liveimg, dict(r.files), r.size, r.source, r.imported_at)


def missing(name: str) -> NotFound:
    return NotFound(f"node {name!r} is not in the inventory")


def node_row_id(conn: Connection, name: str, lock: bool = False) -> int:
    """The id of node `name` (NotFound if there is none), row-locked with `lock`."""
    q = select(N.c.id).where(N.c.name == name)
    found = conn.execute(q.with_for_update() if lock else q).scalar()
    if found is None:
        raise missing(name)
    return found
