"""The store's builds (a node armed to install, its token's digest) and one-time fact-collection
tokens."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from .. import tokens
from ..errors import NotFound
from .clock import utcnow
from .db import Database, Tx
from .records import Build
from .tables import _BUILD, B, C, E, N, build_of, node_row_id


class Builds:
    """Builds and tokens (a part of Store: it uses self.db and nothing of another part)."""

    db: Database

    # -- builds and tokens ------------------------------------------------------------------------
    def active_build(self, name: str) -> Build | None:
        with self.db.read() as conn:
            r = conn.execute(select(*_BUILD).join(N, N.c.id == B.c.node_id)
                             .where(N.c.name == name, B.c.ended_at.is_(None)).order_by(B.c.id.desc()).limit(1)).first()
            if r is None:
                node_row_id(conn, name)
        build = build_of(r) if r is not None else None
        return build if build and build.live() else None

    def build_by_digest(self, digest: str) -> Build | None:
        with self.db.read() as conn:
            r = conn.execute(select(*_BUILD).join(N, N.c.id == B.c.node_id).where(B.c.token_digest == digest)).first()
        return build_of(r) if r is not None else None

    def arm(self, name: str, key: str, ttl_seconds: int, snapshot_id: int | None = None) -> tuple[Build, str]:
        """Start a build: a fresh nonce and the token derived from it with the server `key`
        (only its digest is stored); ends any earlier build. Returns the build and its token."""
        now = utcnow()
        nonce = tokens.new_nonce()
        token = tokens.derive(key, nonce)
        expires = now + timedelta(seconds=ttl_seconds)
        with self.db.write() as tx:
            node_id = node_row_id(tx.conn, name, lock=True)
            self._end_builds(tx, node_id, now, "superseded")
            build_id = tx.execute(insert(B).values(node_id=node_id, nonce=nonce, token_digest=tokens.digest(token),
                                                   snapshot_id=snapshot_id, created_at=now, expires_at=expires)
                                  .returning(B.c.id)).scalar_one()
            tx.bump({node_id: name})
        return Build(build_id, name, nonce, snapshot_id, now, expires, None, None, None, None), token

    def end_build(self, name: str, reason: str) -> None:
        with self.db.write() as tx:
            node_id = node_row_id(tx.conn, name, lock=True)
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
            tx.execute(insert(C).values(node_id=node_row_id(tx.conn, name), token_digest=tokens.digest(token),
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
