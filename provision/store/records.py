"""What the store hands out: plain frozen records, never ORM rows."""

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
