"""Group commit for the store's hot path: writers that arrive while another one writes are
carried out by that one, in its transaction, and share its commit.

A rolling batch moves dozens of nodes at the same moment (they start together and their steps
take the same time), and each move is a small write. One writer at a time with a lock handed
from thread to thread made each of them wait for every earlier one's commit and for the lock
and the GIL to change hands: 11 ms of waiting per write, 200 ms per node, with the lock busy a
third of the time. Here the thread that finds the lock free runs every queued operation, in
one transaction, then wakes their threads with their results (flat combining).

An operation is a function of the transaction (`Tx`) that only reads and writes the database,
so it can be run again: when one of a group raises, the group is rolled back and each of its
operations runs again alone, and the error reaches only its own caller."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

GROUP = 64  # operations in one transaction at most


@dataclass(eq=False)
class _Slot:
    op: Callable[[Any], Any]
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class Combiner:
    def __init__(self, lock: threading.Lock, transaction: Callable[[list[Callable]], list]) -> None:
        """`transaction(ops)` runs `ops` in one transaction and returns their results (all of
        them, or raises and commits nothing); it is called with `lock` held."""
        self._lock, self._transaction = lock, transaction
        self._pending: list[_Slot] = []
        self._guard = threading.Lock()

    def write(self, op: Callable[[Any], Any]) -> Any:
        slot = _Slot(op)
        with self._guard:
            self._pending.append(slot)
        while not slot.done:
            if self._lock.acquire(blocking=False):
                try:
                    self._drain()
                finally:
                    self._lock.release()
                    self._wake_next()
            else:  # the holder runs our operation, or wakes us to take the lock after it
                slot.wake.wait()
                slot.wake.clear()
        if slot.error is not None:
            raise slot.error
        return slot.result

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """The lock, for a writer of its own (an ORM session); queued operations go on after it."""
        with self._lock:
            yield
        self._wake_next()

    def _wake_next(self) -> None:
        with self._guard:
            if self._pending:
                self._pending[0].wake.set()

    def _drain(self) -> None:
        while True:
            with self._guard:
                group, self._pending = self._pending[:GROUP], self._pending[GROUP:]
            if not group:
                return
            try:
                self._run(group)
            finally:
                for slot in group:  # never leave a caller waiting, whatever happened here
                    if not slot.done:
                        slot.error = slot.error or RuntimeError("the store's writer stopped before this write")
                        slot.done = True
                    slot.wake.set()

    def _run(self, group: list[_Slot]) -> None:
        if len(group) > 1:
            try:
                results = self._transaction([s.op for s in group])
            except Exception:  # noqa: BLE001 - rolled back; each runs alone below, its error is its own
                pass
            else:
                for slot, result in zip(group, results, strict=True):
                    slot.result, slot.done = result, True
                return
        for slot in group:
            try:
                slot.result = self._transaction([slot.op])[0]
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                slot.error = exc
            slot.done = True
