"""The conductor inside `provision serve`: it runs the rebuilds submitted to the API.

A run is held through a lease in the database (`rebuilds.owner`, `lease_until`). The conductor
takes the oldest queued run, or a running one whose lease expired (its `serve` was killed, or
lost the database), and renews the leases it holds every third of their length. Each held run is a
Batch in a thread of its own, started with the run's nodes minus those it already finished;
nodes part-way through a step are resumed from their state, and the power driver's once-markers
keep the netboot to at most one per build (as for `provision rebuild --resume`). At each renewal
the run's control is read: "abort" stops it (the nodes in flight finish their current step, nothing
new starts), "pause" starts no new node and lets the ones in flight finish, then gives the run
back as "paused" until someone continues it. A renewal that finds the lease taken over stops the
batch at once: the new holder drives those nodes now (the node's compare-and-set transitions make
sure only one process moves a node)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ProvisionError
from . import states as S
from .batch import Batch, BatchResult, disarm_after_abort
from .lease import apply_control

if TYPE_CHECKING:  # services builds what steps use: it imports this package
    from ..services import Services

log = logging.getLogger("provision.conductor")


@dataclass
class _Held:
    run_id: int
    batch: Batch
    thread: threading.Thread | None = None
    lost: bool = False
    result: BatchResult | None = field(default=None)


class Conductor:
    def __init__(self, ctx: Services, *, lease: float = 30.0, poll: float = 2.0, owner: str | None = None) -> None:
        self.ctx, self.lease, self.poll = ctx, lease, poll
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.held: dict[int, _Held] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Conductor:
        self._thread = threading.Thread(target=self._loop, name="conductor", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """A run was submitted or continued: look now, not at the next tick."""
        self._wake.set()

    def stop(self) -> None:
        """Graceful stop (SIGTERM): stop every held batch and hand the runs back as queued, so
        the next `serve` takes them without waiting for the lease to expire."""
        self._stop.set()
        self._wake.set()
        for held in list(self.held.values()):
            held.batch.stop.set()
            self.ctx.store.release_rebuild(held.run_id, self.owner, "queued")

    # -- the loop -----------------------------------------------------------------------------
    def _loop(self) -> None:
        renew_every = max(0.05, min(self.poll, self.lease / 3))
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # the database may be away for a moment; the leases say who holds what
                log.exception("conductor")
            self._wake.wait(renew_every)
            self._wake.clear()

    def _tick(self) -> None:
        store = self.ctx.store
        for held in list(self.held.values()):
            if held.thread is None or not held.thread.is_alive():
                self._finish(held)
                continue
            control = store.renew_lease(held.run_id, self.owner, self.lease)
            if control is None:
                log.warning("rebuild %s: lease lost; another serve holds it now", held.run_id)
                held.lost = True
            apply_control(held.batch, control)
        if self._stop.is_set():
            return
        run = store.claim_rebuild(self.owner, self.lease)
        if run is not None:
            try:
                self._start(run)
            except ProvisionError as exc:  # e.g. a node removed from the inventory since it was submitted
                log.error("rebuild %s: cannot start: %s", run.id, exc)
                self.held.pop(run.id, None)
                store.release_rebuild(run.id, self.owner, "failed",
                                      {"done": [], "failed": [], "pending": list(run.nodes), "error": str(exc)})

    def _start(self, run) -> None:
        store, o = self.ctx.store, run.options
        states = {n: store.node_state(n) for n in run.nodes}
        # nodes this run finished before a restart or a pause are not started again
        names = [n for n, st in states.items() if not (st.rebuild_id == run.id and st.state == S.DONE)]
        resumed = any(states[n].rebuild_id == run.id for n in names)
        log.info("rebuild %s: %s %d node(s) as %s", run.id, "resuming" if resumed else "starting", len(names),
                 self.owner)
        batch = Batch(self.ctx, names, rebuild_id=run.id, max_parallel=o.get("max_parallel", 1),
                      min_up=o.get("min_up"), canary=0 if resumed else o.get("canary", 0),
                      accept_drift=o.get("accept_drift", False), allow_gluster=o.get("allow_gluster", False),
                      resume=False, retry=set(run.nodes) if o.get("retry") else set())
        held = _Held(run.id, batch)
        held.thread = threading.Thread(target=self._run, args=(held,), name=f"rebuild-{run.id}", daemon=True)
        self.held[run.id] = held
        if run.control == "pause":
            batch.hold.set()
        elif run.control == "abort":
            batch.stop.set()
        held.thread.start()

    def _run(self, held: _Held) -> None:
        try:
            held.result = held.batch.run()
        except Exception as exc:
            log.exception("rebuild %s", held.run_id)
            held.result = BatchResult(error=f"internal error: {type(exc).__name__}: {exc}")
        self._wake.set()

    def _finish(self, held: _Held) -> None:
        del self.held[held.run_id]
        if held.lost or self._stop.is_set():
            return  # another serve holds it, or we handed it back
        r, batch = held.result or BatchResult(error="the run ended without a result"), held.batch
        summary = {"done": r.done, "failed": r.failed, "pending": r.pending, "error": r.error,
                   "elsewhere": r.elsewhere, "peak_in_flight": r.peak_in_flight}
        if r.ok:
            status = "done"
        elif r.failed or (r.error and not batch.stop.is_set()):
            status = "failed"
        elif batch.stop.is_set():
            status = "aborted"
        elif batch.hold.is_set():
            status = "paused"
        else:
            status = "stopped"
        if status == "aborted":
            summary["disarmed"] = disarm_after_abort(self.ctx, held.run_id, batch.names)
        if status == "paused":
            self.ctx.store.release_rebuild(held.run_id, self.owner, "paused")
        else:
            self.ctx.store.release_rebuild(held.run_id, self.owner, status, summary)
        log.info("rebuild %s: %s (done %d, failed %d, pending %d)", held.run_id, status, len(r.done),
                 len(r.failed), len(r.pending))
