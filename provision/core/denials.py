"""Refusals told in a node's event log at a bounded rate. A refused kickstart fetch, a callback or
an upload from the wrong address comes from the unauthenticated network: one event row each let
anyone write ~650 rows a second into the store and the node's page. The first refusal of a kind
for a node is recorded at once; the ones after it within `window` seconds are counted, and the
next one recorded after the window says how many were not."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Denials:
    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.clock = window, clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}  # (node, kind) -> when last recorded
        self._held: dict[tuple[str, str], int] = {}  # (node, kind) -> refusals not recorded since

    def tell(self, record: Callable[[str, str, str], None], node: str, kind: str, message: str) -> bool:
        """Record `message` through `record(node, kind, message)` unless one of this kind was recorded
        for the node within the window; True if recorded."""
        key, now = (node, kind), self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            held = self._held.pop(key, 0)
            self._last[key] = now
            if len(self._last) > 100_000:  # a bound on memory, not a policy
                self._last.clear()
        if held:
            message += f" ({held} more refused in the last {self.window:.0f} s, not recorded)"
        record(node, kind, message)
        return True
