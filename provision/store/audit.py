"""The store's audit trail: append-only, one row per operator action."""

from __future__ import annotations

from sqlalchemy import insert, or_, select

from .clock import utcnow
from .db import Database
from .records import AuditEntry
from .tables import AUDIT

_MAX = {"actor": 128, "source": 128, "action": 64, "target": 255}


class AuditTrail:
    """The audit rows (a part of Store: it uses self.db and nothing of another part)."""

    db: Database

    def record_audit(self, actor: str, source: str, action: str, target: str, outcome: str, detail: str = "") -> None:
        values = {k: str(v)[:_MAX[k]] for k, v in
                  (("actor", actor), ("source", source), ("action", action), ("target", target))}
        with self.db.write() as tx:
            tx.execute(insert(AUDIT).values(ts=utcnow(), outcome=outcome, detail=detail[:2000], **values))

    def audit(self, target: str | None = None, actor: str | None = None, limit: int = 200) -> list[AuditEntry]:
        """The newest `limit` rows, newest first; with `target`, those naming it (a node's name
        matches the rows of actions on it, and of runs and imports that named it)."""
        q = select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit)
        if target is not None:
            q = q.where(or_(AUDIT.c.target == target, AUDIT.c.detail.contains(f"[{target}]")))
        if actor is not None:
            q = q.where(AUDIT.c.actor == actor)
        with self.db.read() as conn:
            return [AuditEntry(r.id, r.ts, r.actor, r.source, r.action, r.target, r.outcome, r.detail)
                    for r in conn.execute(q)]
