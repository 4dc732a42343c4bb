"""The store's catalogue of imported installation media."""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from ..errors import InputError
from .clock import utcnow
from .db import Database
from .records import Media
from .tables import B, M, N, media_of


class MediaCatalogue:
    """Imported media (a part of Store: it uses self.db and nothing of another part)."""

    db: Database

    # -- media ------------------------------------------------------------------------------------
    def add_media(self, name: str, kind: str, liveimg: str | None, files: dict[str, str], size: int,
                  source: str) -> Media:
        with self.db.write() as tx:
            if tx.execute(select(M.c.name).where(M.c.name == name)).first() is not None:
                raise InputError(f"--name: media {name!r} is already imported (media remove {name} first)")
            r = tx.execute(insert(M).values(name=name, kind=kind, liveimg=liveimg, files=files, size=size,
                                            source=source, imported_at=utcnow()).returning(*M.c)).one()
        return media_of(r)

    def media(self, name: str) -> Media | None:
        with self.db.read() as conn:
            r = conn.execute(select(M).where(M.c.name == name)).first()
        return media_of(r) if r else None

    def list_media(self) -> list[Media]:
        with self.db.read() as conn:
            return [media_of(r) for r in conn.execute(select(M).order_by(M.c.name))]

    def remove_media(self, name: str, media_of_profile) -> list[str]:
        """Unregister `name`, unless a live build's node boots it (`media_of_profile(profile)` names
        a profile's media): then nothing changes and the nodes are returned."""
        now = utcnow()
        with self.db.write() as tx:
            if tx.execute(select(M.c.name).where(M.c.name == name)).first() is None:
                raise InputError(f"media {name!r} is not imported")
            rows = tx.execute(select(N.c.name, N.c.profile).join(B, B.c.node_id == N.c.id)
                              .where(B.c.ended_at.is_(None), B.c.expires_at > now)).all()
            users = sorted({n for n, profile in rows if media_of_profile(profile) == name})
            if not users:
                tx.execute(delete(M).where(M.c.name == name))
            return users
