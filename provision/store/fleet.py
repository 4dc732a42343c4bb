"""The store's fleet view: every node's row as the console's fleet page and /metrics read it, in
one query (no facts parsed), and the power state last seen through each node's BMC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select, update

from .clock import utcnow
from .db import Database
from .tables import B, N, S, missing


@dataclass(frozen=True)
class FleetRow:
    name: str
    fqdn: str
    cluster: str
    profile: str
    bmc: dict  # address, driver, username, password_file: no secret
    state: str
    step_started_at: datetime | None
    failed_step: str | None
    fail_reason: str | None
    rebuild_id: int | None
    last_rebuild_seconds: float | None
    power_state: str | None
    power_seen_at: datetime | None
    snapshot_id: int | None
    snapshot_at: datetime | None
    armed: bool  # it has a live build: it boots the installer


class FleetView:
    """A part of Store: it uses self.db and nothing of another part."""

    db: Database

    def fleet(self, cluster: str | None = None, name: str | None = None) -> list[FleetRow]:
        """Every node (of `cluster`; or the one `name`d), by name, with its latest snapshot's id and age and whether it
        is armed: one query however many nodes there are."""
        now = utcnow()
        latest = select(S.c.id, S.c.created_at).where(S.c.node_id == N.c.id).order_by(S.c.id.desc()).limit(1)
        armed = exists().where(B.c.node_id == N.c.id, B.c.ended_at.is_(None), B.c.expires_at > now)
        q = select(N.c.name, N.c.fqdn, N.c.cluster, N.c.profile, N.c.bmc, N.c.state, N.c.step_started_at,
                   N.c.failed_step, N.c.fail_reason, N.c.rebuild_id, N.c.last_rebuild_seconds, N.c.power_state,
                   N.c.power_seen_at, latest.with_only_columns(S.c.id).scalar_subquery().label("snapshot_id"),
                   latest.with_only_columns(S.c.created_at).scalar_subquery().label("snapshot_at"),
                   armed.label("armed")).order_by(N.c.name)
        if cluster:
            q = q.where(N.c.cluster == cluster)
        if name:
            q = q.where(N.c.name == name)
        with self.db.read() as conn:
            return [FleetRow(**{**r._mapping, "armed": bool(r.armed)}) for r in conn.execute(q)]

    def record_power(self, name: str, state: str) -> None:
        """The power state just seen through the node's BMC ("on" or "off")."""
        with self.db.write() as tx:
            done = tx.execute(update(N).where(N.c.name == name).values(power_state=state, power_seen_at=utcnow()))
            if done.rowcount == 0:
                raise missing(name)
