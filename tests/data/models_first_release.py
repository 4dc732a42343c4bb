"""SQLAlchemy 2 tables. Facts snapshots are append-only; nothing here is ever deleted by
an import or a rebuild."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
    """One `provision rebuild` run: its nodes in order and its options, for --resume."""

    __tablename__ = "rebuilds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    nodes: Mapped[list] = mapped_column(JSON)
    options: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="running")


class MetaRow(Base):
    """Key/value counters; `generation` changes whenever a boot config may have changed."""

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
