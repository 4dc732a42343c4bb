"""Registered installation media (rows of MediaRow; the files are under [paths] media)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from ..errors import InputError
from .clock import utcnow
from .models import BuildRow, MediaRow, NodeRow


@dataclass(frozen=True)
class Media:
    name: str
    kind: str
    liveimg: str | None
    files: dict[str, str]
    size: int
    source: str
    imported_at: datetime


def _media(r: MediaRow) -> Media:
    return Media(r.name, r.kind, r.liveimg, dict(r.files), r.size, r.source, r.imported_at)


class MediaMixin:
    def add_media(self, name: str, kind: str, liveimg: str | None, files: dict[str, str], size: int,
                  source: str) -> Media:
        with self._writing() as s:
            if s.get(MediaRow, name) is not None:
                raise InputError(f"--name: media {name!r} is already imported (media remove {name} first)")
            row = MediaRow(name=name, kind=kind, liveimg=liveimg, files=files, size=size, source=source,
                           imported_at=utcnow())
            s.add(row)
            s.flush()
            return _media(row)

    def media(self, name: str) -> Media | None:
        with self._session() as s:
            row = s.get(MediaRow, name)
            return _media(row) if row else None

    def list_media(self) -> list[Media]:
        with self._session() as s:
            return [_media(r) for r in s.scalars(select(MediaRow).order_by(MediaRow.name))]

    def remove_media(self, name: str, media_of_profile) -> list[str]:
        """Unregister `name`, unless a live build's node boots it (`media_of_profile(profile)` names
        a profile's media): then nothing changes and the nodes are returned."""
        now = utcnow()
        with self._writing() as s:
            if s.get(MediaRow, name) is None:
                raise InputError(f"media {name!r} is not imported")
            rows = s.execute(select(NodeRow.name, NodeRow.profile).join(BuildRow, BuildRow.node_id == NodeRow.id)
                             .where(BuildRow.ended_at.is_(None), BuildRow.expires_at > now)).all()
            users = sorted({n for n, profile in rows if media_of_profile(profile) == name})
            if not users:
                s.delete(s.get(MediaRow, name))
            return users
