"""What every BMC driver shares: one operation per BMC at a time in a process (BmcLocks), and
at-most-once operations across processes and crashes (once_lock)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

from .base import PowerTimeout


class BmcLocks:
    """One lock per BMC (address:port or URL), shared by every driver of one process."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


@contextlib.contextmanager
def once_lock(state_dir: Path | None, node: str, label: str, timeout: float, once: str | None):
    """Yield (marker path, fds a worker process must inherit), or (None, ()) without `once`.
    The caller holds an flock on the node's lock file while it acts; it writes `<once>.done` when
    the BMC accepted the operation, and a later call (a resumed run after kill -9) takes the lock,
    which waits for an orphaned worker, and finds the marker instead of acting again."""
    if once is None or state_dir is None:
        yield None, ()
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / f"{node}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + 2 * timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PowerTimeout(node, label, "another power operation on this node is still running") from None
                time.sleep(0.1)
        yield state_dir / f"{once}.done", (fd,)
    finally:
        os.close(fd)


def write_marker(marker: Path) -> None:
    """The operation was accepted: record it durably before anything else."""
    with open(marker, "w") as fh:
        fh.flush()
        os.fsync(fh.fileno())
