"""The store's journal: each node's events and the logs its installer uploaded."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select

from .clock import utcnow
from .db import Database
from .records import Event
from .tables import E, L, N, node_row_id


class Journal:
    """Events and logs (a part of Store: it uses self.db and nothing of another part)."""

    db: Database

    # -- events and logs --------------------------------------------------------------------------
    def add_event(self, name: str, kind: str, message: str) -> None:
        with self.db.write() as tx:
            node_id = node_row_id(tx.conn, name)
            tx.execute(insert(E).values(node_id=node_id, ts=utcnow(), kind=kind, message=message))

    def events(self, name: str, limit: int | None = None) -> list[Event]:
        """The node's events, oldest first; with `limit`, only the newest `limit` of them."""
        with self.db.read() as conn:
            node_id = node_row_id(conn, name)
            q = select(E.c.ts, E.c.kind, E.c.message).where(E.c.node_id == node_id)
            rows = (conn.execute(q.order_by(E.c.id)).all() if limit is None
                    else list(reversed(conn.execute(q.order_by(E.c.id.desc()).limit(limit)).all())))
        return [Event(r.ts, r.kind, r.message) for r in rows]

    def event_count(self, name: str) -> int:
        with self.db.read() as conn:
            node_id = node_row_id(conn, name)
            return conn.execute(select(func.count()).select_from(E).where(E.c.node_id == node_id)).scalar_one()

    def events_since(self, after: int, limit: int = 500) -> list[tuple[int, datetime, str, str, str]]:
        """(id, ts, node, kind, message) of every node's events with an id above `after`, oldest
        first: what a live feed sends (one indexed range query; ids only grow)."""
        with self.db.read() as conn:
            rows = conn.execute(select(E.c.id, E.c.ts, N.c.name, E.c.kind, E.c.message)
                                .join(N, N.c.id == E.c.node_id)
                                .where(E.c.id > after).order_by(E.c.id).limit(limit)).all()
        return [tuple(r) for r in rows]

    def transitions(self, names: list[str], since: datetime | None = None) -> dict[str, list[tuple[datetime, str]]]:
        """Each node's state moves ((ts, message), oldest first), from `since` on: what step
        timelines are drawn from (one query; the (node, ts) index)."""
        out: dict[str, list[tuple[datetime, str]]] = {n: [] for n in names}
        if not names:
            return out
        with self.db.read() as conn:
            q = (select(N.c.name, E.c.ts, E.c.message).join(N, N.c.id == E.c.node_id)
                 .where(N.c.name.in_(list(names)), E.c.kind == "transition"))
            if since is not None:
                q = q.where(E.c.ts >= since)
            for r in conn.execute(q.order_by(E.c.id)):
                out[r.name].append((r.ts, r.message))
        return out

    def last_event_id(self) -> int:
        with self.db.read() as conn:
            return conn.execute(select(func.max(E.c.id))).scalar() or 0

    def add_log(self, name: str, kind: str, text: str) -> None:
        with self.db.write() as tx:
            tx.execute(insert(L).values(node_id=node_row_id(tx.conn, name), ts=utcnow(), kind=kind, text=text))

    def logs(self, name: str) -> list[tuple[datetime, str, str]]:
        with self.db.read() as conn:
            node_id = node_row_id(conn, name)
            return [(r.ts, r.kind, r.text) for r in conn.execute(select(L.c.ts, L.c.kind, L.c.text)
                                                                 .where(L.c.node_id == node_id).order_by(L.c.id))]
