"""What the store hands out: plain frozen records, never rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..domain import Facts, Node
from .clock import utcnow


@dataclass(frozen=True)
class Snapshot:
    id: int
    node: str
    created_at: datetime
    source: str
    facts: Facts


@dataclass(frozen=True)
class NodeRecord:
    node: Node
    state: str
    snapshot_id: int | None
    updated_at: datetime


@dataclass(frozen=True)
class Build:
    id: int
    node: str
    nonce: str
    snapshot_id: int | None
    created_at: datetime
    expires_at: datetime
    ks_fetched_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    boot_local_at: datetime | None = None

    @property
    def boots_install(self) -> bool:
        """Per-MAC boot configs say 'install' (until the `installed` callback switches them)."""
        return self.live() and self.boot_local_at is None

    def live(self, now: datetime | None = None) -> bool:
        return self.ended_at is None and (now or utcnow()) < self.expires_at


@dataclass(frozen=True)
class Event:
    ts: datetime
    kind: str
    message: str


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
    last_rebuild_seconds: float | None = None  # how long its last completed rebuild took


FINISHED = ("done", "failed", "stopped", "aborted")  # a run in one of these never runs again


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


@dataclass(frozen=True)
class Media:
    name: str
    kind: str
    liveimg: str | None
    files: dict[str, str]
    size: int
    source: str
    imported_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: datetime
    actor: str
    source: str
    action: str
    target: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class ImportResult:
    created: list[str]
    updated: list[str]
    snapshots: list[str]


def merge(old: dict | None, new: dict) -> dict:
    """Step data `new` over `old`; a None value removes its key."""
    out = dict(old or {})
    for k, v in new.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out
