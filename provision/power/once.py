"""What every BMC driver shares: one operation per BMC at a time in a process (BmcLocks),
at-most-once operations across processes and crashes (once_lock), and the driver's frame
(BmcDriver: identity, state dir, hard timeout, bounded retries of transient failures) with its
per-node factory (Factory)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from ..errors import InputError
from .base import PowerError, PowerTimeout


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


class BmcDriver:
    """The frame of a BMC driver; subclasses implement the PowerDriver operations."""

    def __init__(self, node: str, bmc, locks: BmcLocks, *, state_dir: Path | None = None,
                 timeout: float = 30.0, attempts: int = 3, backoff: float = 1.0) -> None:
        self.node, self.bmc, self.locks = node, bmc, locks
        self.state_dir = Path(state_dir) if state_dir else None
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff
        self.label = bmc.label

    def validate(self) -> None:
        if not Path(self.bmc.password_file).is_file():
            raise InputError(f"node {self.node}: bmc.password_file {self.bmc.password_file} is not a readable file")

    def _retrying(self, call, *args):
        """`call(*args)`, again after a transient failure (unreachable, timeout), `attempts` times
        in all with exponential backoff; refused credentials and requests are not retried."""
        return retry(
            retry=retry_if_exception(lambda e: isinstance(e, PowerError) and e.retryable),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=10),
            reraise=True,
        )(call)(*args)


class Factory:
    """Builds a `driver` per node; all share one BmcLocks and one state dir (at-most-once markers)."""

    driver: type[BmcDriver]

    def __init__(self, state_dir: Path, *, timeout: float = 30.0, attempts: int = 3, backoff: float = 1.0) -> None:
        self.state_dir = Path(state_dir)
        self.locks, self.timeout, self.attempts, self.backoff = BmcLocks(), timeout, attempts, backoff

    def __call__(self, node) -> BmcDriver:
        return self.driver(node.name, node.bmc, self.locks, state_dir=self.state_dir, timeout=self.timeout,
                           attempts=self.attempts, backoff=self.backoff)
