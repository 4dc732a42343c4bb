"""Group commit of the kickstart fetches the HTTP front answers (front.py): a fetch is answered only
once it is recorded, and one thread records every fetch queued meanwhile in one transaction."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

log = logging.getLogger("provision.http")


@dataclass
class Fetch:
    """A kickstart fetch the front answers once the store has recorded it."""
    fd: int
    conn: object  # the front's connection
    build_id: int
    event: str
    macs: list[str]
    head_len: int
    response: bytes
    keep: bool
    recorded: bool = False


class Recorder:
    """Group commit of kickstart fetches: one thread writes every fetch queued meanwhile in one
    transaction, then hands each back to `done` (200 installers at once cost a few commits). The
    store checks each fetch again in that transaction (Store.record_ks_fetches): the cache may be one
    refresh behind a change made by another process, such as a build ended by the CLI."""

    def __init__(self, store, done) -> None:
        self.store, self.done = store, done
        self._queue: queue.SimpleQueue[Fetch | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ks-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)

    def put(self, fetch: Fetch) -> None:
        self._queue.put(fetch)

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while len(batch) < 500:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            try:
                passed = self.store.record_ks_fetches([(f.build_id, f.event, f.macs) for f in batch])
            except Exception:
                log.exception("recording %d kickstart fetches failed; Flask answers them", len(batch))
                passed = [False] * len(batch)
            for f, ok in zip(batch, passed, strict=True):
                f.recorded = ok
                self.done(f)
