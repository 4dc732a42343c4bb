"""Brute-force throttling of console logins: after `attempts` failures for one user name, or from
one address, within `window` seconds, further logins there are refused (429) until the oldest of
those failures is `window` seconds old. In-process: each `serve` counts its own."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class LoginThrottle:
    def __init__(self, attempts: int, window: float, clock=time.monotonic) -> None:
        self.attempts, self.window, self.clock = attempts, window, clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def wait(self, *keys: str) -> float:
        """Seconds until a login for `keys` (user name, address) is tried again; 0: now."""
        now = self.clock()
        with self._lock:
            waits = [q[0] + self.window - now for k in keys if len(q := self._live(k, now)) >= self.attempts]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for k in keys:
                self._live(k, now).append(now)
            if len(self._failures) > 100_000:  # a flood of names: forget the quiet ones
                for k in [k for k, q in self._failures.items() if not self._live(k, now)]:
                    del self._failures[k]
