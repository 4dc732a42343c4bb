"""SQLAlchemy 2 tables. Facts snapshots are append-only; nothing here is ever deleted by
an import or a rebuild."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class NodeRow(Base):
    __tablename__ = "nodes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    fqdn: Mapped[str] = mapped_column(String(253), unique=True)
    cluster: Mapped[str] = mapped_column(String(63), index=True)
    profile: Mapped[str] = mapped_column(String(16))
    bmc: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(32), default="ready")
    step_started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    failed_step: Mapped[str | None] = mapped_column(String(32), nullable=True)
    fail_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    rebuild_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # the store-wide generation of this node's last change that may change what it is served
    # (facts, builds, its inventory entry): caches compare it, `changed_since` scans its index
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0", index=True)
    # when its current (or last) rebuild started, and how long its last completed rebuild took:
    # a batch starts the nodes that took longest first
    rebuild_started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_rebuild_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    # its power state as last seen through its BMC ("on", "off"), and when (migration 0006)
    power_state: Mapped[str | None] = mapped_column(String(8), nullable=True)
    power_seen_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class SnapshotRow(Base):
    __tablename__ = "facts_snapshots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    source: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64))
    data: Mapped[str] = mapped_column(Text)


class BuildRow(Base):
    __tablename__ = "builds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    nonce: Mapped[str] = mapped_column(String(64))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("facts_snapshots.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    ks_fetched_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    boot_local_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    ts: Mapped[datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_events_node_ts", "node_id", "ts"),)


class CollectRow(Base):
    """One-time token for a node to upload its facts (GET /collect.sh, POST /api/v1/collect/<token>)."""

    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LogRow(Base):
    """Installer and enrollment logs uploaded by nodes (size-capped)."""

    __tablename__ = "logs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    ts: Mapped[datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)


class RebuildRow(Base):
    """One rebuild run: its nodes in order and its options. runner "cli": run by a `provision
    rebuild` process (resumed with --resume). runner "service": submitted to the API and run by
    the `serve` process holding its lease (owner, lease_until), which renews it while it runs; an
    expired lease is taken over by another (or a restarted) `serve`. control: what the operator
    asked ("run", "pause", "abort"); summary: the outcome, when it ended."""

    __tablename__ = "rebuilds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    nodes: Mapped[list] = mapped_column(JSON)
    options: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="running")
    runner: Mapped[str] = mapped_column(String(16), default="cli")
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    control: Mapped[str] = mapped_column(String(16), default="run")
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    summary: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class AuditRow(Base):
    """One operator action (API, console, CLI): who, from where, what, on what, and how it ended.
    Append-only: nothing updates or deletes a row. `detail` never holds a secret."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # "ok" | "refused" | "failed"
    detail: Mapped[str] = mapped_column(Text, default="")


class UiSessionRow(Base):
    """A console login: the cookie carries its token, the store its digest; logout ends it, so a
    copied cookie is worth nothing after it."""

    __tablename__ = "ui_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # who logged in: a directory user and the role their groups gave them at login, or the
    # break-glass admin token
    user: Mapped[str] = mapped_column(String(128), default="admin (break-glass token)",
                                      server_default="admin (break-glass token)")
    role: Mapped[str] = mapped_column(String(16), default="admin", server_default="admin")


class ApiTokenRow(Base):
    """A personal API token: its owner, the role it acts with (the owner's when it was made), its
    digest (the token itself is shown once, never stored), when it expires, and when it was revoked."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    user: Mapped[str] = mapped_column(String(128), index=True)
    role: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class MetaRow(Base):
    """Key/value counters; `generation` grows by one on every write that may change a boot config
    or kickstart, and the nodes it touched take its new value."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class AddressRow(Base):
    """Every MAC and IP of every node's latest facts, unique across the store: the one check all
    writers of facts go through (in their own transaction), and the index a boot-config or
    kickstart request uses to find its node in one indexed query."""

    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "MAC" | "IP address"
    value: Mapped[str] = mapped_column(String(64))
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_address"),)


class MediaRow(Base):
    """Installation media imported from an ISO (provision/media.py), by the name a profile uses
    (`[defaults] rhvh_media` / `el_media`). Its files live under `[paths] media`/<name>/."""

    __tablename__ = "media"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "ovirt-node" (liveimg) | "el" (repo tree)
    liveimg: Mapped[str | None] = mapped_column(String(255), nullable=True)  # relative path
    files: Mapped[dict] = mapped_column(JSON)  # relative path -> sha256
    size: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(255))  # the ISO's file name and volume id
    imported_at: Mapped[datetime] = mapped_column(DateTime)


def table(model: type[Base]) -> Table:
    """A model's Table, for Core statements (the declarative attribute is typed as a FromClause)."""
    return cast(Table, model.__table__)
