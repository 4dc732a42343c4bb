"""The store's rebuild runs and their leases (set and judged on the database's clock)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select, update

from ..errors import Conflict, NotFound
from .clock import db_utcnow, utcnow
from .db import Database
from .records import FINISHED, Rebuild
from .tables import R, rebuild_of


class Runs:
    """Rebuild runs (a part of Store: it uses self.db and nothing of another part)."""

    db: Database

    # -- rebuild runs -----------------------------------------------------------------------------
    def create_rebuild(self, nodes: list[str], options: dict, runner: str = "cli") -> Rebuild:
        """A run: "cli" runs now in the calling process; "service" is queued for a `serve`."""
        with self.db.write() as tx:
            r = tx.execute(insert(R).values(created_at=utcnow(), nodes=list(nodes), options=dict(options),
                                            runner=runner, status="running" if runner == "cli" else "queued",
                                            control="run").returning(*R.c)).one()
        return rebuild_of(r)

    def rebuilds(self, status: str | None = None, runner: str | None = None) -> list[Rebuild]:
        q = select(R).order_by(R.c.id)
        if status:
            q = q.where(R.c.status == status)
        if runner:
            q = q.where(R.c.runner == runner)
        with self.db.read() as conn:
            return [rebuild_of(r) for r in conn.execute(q)]

    def rebuild(self, rebuild_id: int) -> Rebuild:
        with self.db.read() as conn:
            r = conn.execute(select(R).where(R.c.id == rebuild_id)).first()
        if r is None:
            raise NotFound(f"rebuild {rebuild_id} does not exist")
        return rebuild_of(r)

    def set_rebuild_status(self, rebuild_id: int, status: str, summary: dict | None = None) -> None:
        values: dict = {"status": status}
        if status in FINISHED:
            values.update(finished_at=utcnow(), summary=summary)
        with self.db.write() as tx:
            tx.execute(update(R).where(R.c.id == rebuild_id).values(**values))

    def busy_nodes(self) -> dict[str, int]:
        """Nodes named by a service run that has not ended: node -> run id."""
        out: dict[str, int] = {}
        for run in self.rebuilds(runner="service"):
            if not run.finished:
                out.update({n: run.id for n in run.nodes if n not in out})
        return out

    # -- leases on runs (the conductor's, and `rebuild --local`'s) --------------------------------
    # Leases are set and judged on the database's clock (db_utcnow), never this process's.
    def claim_rebuild(self, owner: str, lease_seconds: float) -> Rebuild | None:
        """Take the oldest service run that is queued, or running under an expired lease (its
        `serve` died), for `owner`: one compare-and-set, so two `serve` processes never both get it."""
        query = (select(R.c.id, R.c.status, R.c.lease_until)
                 .where(R.c.runner == "service", R.c.status.in_(("queued", "running"))).order_by(R.c.id))

        def free(r, now) -> bool:
            return r.status == "queued" or r.lease_until is None or r.lease_until <= now

        with self.db.read() as conn:  # every conductor asks every few seconds: a read first,
            now = db_utcnow(conn)      # the write lock only when there is one
            if not any(free(r, now) for r in conn.execute(query)):
                return None
        with self.db.write() as tx:
            now = db_utcnow(tx.conn)
            for r in tx.execute(query).all():
                if not free(r, now):
                    continue  # held
                took = tx.execute(update(R).where(R.c.id == r.id, R.c.status == r.status,
                                                  R.c.lease_until.is_(None) if r.lease_until is None
                                                  else R.c.lease_until == r.lease_until)
                                  .values(status="running", owner=owner,
                                          lease_until=now + timedelta(seconds=lease_seconds))).rowcount
                if took:
                    return rebuild_of(tx.execute(select(R).where(R.c.id == r.id)).one())
        return None

    def hold_rebuild(self, rebuild_id: int, owner: str, lease_seconds: float, dead: str | None = None) -> bool:
        """A `provision rebuild --local` process takes its run (new, or one it resumes) under a lease
        as the conductor does, so a run whose process is gone shows as such and can be ended or
        taken over. `dead`: a holder known to be gone (a process of this host that no longer
        exists), taken over without waiting for its lease. False when another live holder has it."""
        with self.db.write() as tx:
            now = db_utcnow(tx.conn)
            free = ((R.c.owner.is_(None)) | (R.c.owner == owner) | (R.c.lease_until.is_(None))
                    | (R.c.lease_until <= now))
            if dead is not None:
                free = free | (R.c.owner == dead)
            return bool(tx.execute(update(R).where(R.c.id == rebuild_id, R.c.status.not_in(FINISHED), free)
                                   .values(status="running", owner=owner, control="run",
                                           lease_until=now + timedelta(seconds=lease_seconds))).rowcount)

    def runner_gone(self, run: Rebuild) -> bool:
        """A run that says it is running but whose holder's lease ran out (on the database's clock):
        its `serve` or `provision rebuild --local` process is gone."""
        if run.status != "running" or run.lease_until is None:
            return False
        with self.db.read() as conn:
            return run.lease_until <= db_utcnow(conn)

    def renew_lease(self, rebuild_id: int, owner: str, lease_seconds: float) -> str | None:
        """Extend `owner`'s lease on a run it holds; the run's control ("run", "pause", "abort"),
        or None when the lease was lost (expired and taken over)."""
        with self.db.write() as tx:
            took = tx.execute(update(R).where(R.c.id == rebuild_id, R.c.owner == owner, R.c.status == "running")
                              .values(lease_until=db_utcnow(tx.conn) + timedelta(seconds=lease_seconds))).rowcount
            if not took:
                return None
            return tx.execute(select(R.c.control).where(R.c.id == rebuild_id)).scalar()

    def release_rebuild(self, rebuild_id: int, owner: str, status: str, summary: dict | None = None) -> bool:
        """The holder ends its hold: `status` "paused" or "queued" (someone may take it again now)
        or a finished one; False if it no longer held the run. A run paused by its holder whose
        operator asked to continue meanwhile (after the holder saw the pause) is queued again, not
        left paused with nobody to continue it."""
        values: dict = {"status": status, "owner": None, "lease_until": None}
        if status in FINISHED:
            values.update(finished_at=utcnow(), summary=summary)
        with self.db.write() as tx:
            if status == "paused":
                control = tx.execute(select(R.c.control).where(R.c.id == rebuild_id).with_for_update()).scalar()
                if control == "run":
                    values["status"] = "queued"
            return bool(tx.execute(update(R).where(R.c.id == rebuild_id, R.c.owner == owner)
                                   .values(**values)).rowcount)

    def control_rebuild(self, rebuild_id: int, action: str) -> Rebuild:
        """An operator's abort, pause or continue of a run. Abort and pause are carried out by the
        holder (a `serve`, or a `provision rebuild --local` process) at its next heartbeat; a paused or
        queued run, or one whose holder is gone (its lease ran out), is aborted here at once, leaving
        its nodes where they are for a retry; continue queues a paused service run again."""
        if action not in ("abort", "pause", "continue"):
            raise ValueError(action)
        with self.db.write() as tx:
            r = tx.execute(select(R).where(R.c.id == rebuild_id).with_for_update()).first()
            if r is None:
                raise NotFound(f"rebuild {rebuild_id} does not exist")
            if r.status in FINISHED:
                raise Conflict(f"rebuild {rebuild_id} has ended ({r.status})")
            gone = r.status == "running" and (r.lease_until is None or r.lease_until <= db_utcnow(tx.conn))
            values: dict
            if gone and action == "abort":
                values = {"status": "aborted", "finished_at": utcnow(), "owner": None, "lease_until": None,
                          "control": "abort", "summary": {"done": [], "failed": [], "pending": list(r.nodes),
                                                          "error": "aborted: its runner was gone (lease expired)"}}
            elif r.runner != "service" and action == "continue":
                raise Conflict(f"rebuild {rebuild_id} runs in a `provision rebuild --local` process: "
                               "continue it with `provision rebuild --resume`")
            elif gone:
                raise Conflict(f"rebuild {rebuild_id}: its runner is gone (lease expired): abort it, or take its "
                               "nodes over with `provision rebuild NODE --retry`")
            elif action == "continue":
                values = {"control": "run", **({"status": "queued"} if r.status == "paused" else {})}
            elif action == "pause":
                values = {"control": "pause"}
            else:
                values = {"control": "abort"}
                if r.status in ("queued", "paused"):
                    values.update(status="aborted", finished_at=utcnow(),
                                  summary={"done": [], "failed": [], "pending": list(r.nodes),
                                           "error": "aborted before it ran"})
            tx.execute(update(R).where(R.c.id == rebuild_id).values(**values))
            return rebuild_of(tx.execute(select(R).where(R.c.id == rebuild_id)).one())
