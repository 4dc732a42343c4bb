"""A `provision rebuild --local` process holds its run under a lease, as a `serve` does: renewed
every third of `[server] run_lease`, so a run whose process is gone (killed, its SSH session lost)
shows as such (`provision runs`, the API, the console) and can be aborted at once or its nodes taken
over (`rebuild --retry`, `rebuild --resume`). An abort or pause asked from anywhere reaches the
process at its next renewal, as it reaches a `serve`."""

from __future__ import annotations

import os
import socket
import threading

from ..errors import InputError


def apply_control(batch, control: str | None) -> None:
    """What a holder does with the run's control at a renewal (None: the lease was lost)."""
    if control is None or control == "abort":
        batch.stop.set()
    elif control == "pause":
        batch.hold.set()
    else:
        batch.hold.clear()


class Keeper:
    def __init__(self, store, run_id: int, lease: float) -> None:
        self.store, self.run_id, self.lease = store, run_id, lease
        self.owner = f"cli:{socket.gethostname()}:{os.getpid()}"
        self._done = threading.Event()
        self.batch = None

    def _dead_here(self, owner: str | None) -> str | None:
        """`owner` when it is a `provision rebuild` process of this host that no longer exists."""
        host, _, pid = (owner or "").removeprefix("cli:").rpartition(":")
        if not (owner or "").startswith("cli:") or host != socket.gethostname() or not pid.isdigit():
            return None
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return owner
        except PermissionError:
            return None
        return None

    def take(self) -> Keeper:
        dead = self._dead_here(self.store.rebuild(self.run_id).owner)
        if not self.store.hold_rebuild(self.run_id, self.owner, self.lease, dead=dead):
            held = self.store.rebuild(self.run_id)
            raise InputError(f"rebuild {self.run_id} is held by {held.owner}, whose lease is live: "
                             "abort it there, or wait for its lease to run out")
        return self

    def keep(self, batch) -> None:
        self.batch = batch
        threading.Thread(target=self._loop, name=f"lease-{self.run_id}", daemon=True).start()

    def _loop(self) -> None:
        while not self._done.wait(max(0.05, self.lease / 3)):
            apply_control(self.batch, self.store.renew_lease(self.run_id, self.owner, self.lease))

    def release(self, status: str, summary: dict, ctx=None) -> None:
        self._done.set()
        if self.batch is not None and self.batch.stop.is_set() and status == "stopped":
            status = "aborted"
        if status == "aborted" and ctx is not None and self.batch is not None:
            from .batch import disarm_after_abort
            summary = dict(summary, disarmed=disarm_after_abort(ctx, self.run_id, self.batch.names))
        self.store.release_rebuild(self.run_id, self.owner, status, summary)
