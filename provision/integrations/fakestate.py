"""State for fakes, kept in a JSON file under an exclusive lock so several processes (a test,
`provision serve`, a `provision rebuild` that may be killed) share one fake system; or in memory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import threading
import time
from pathlib import Path


class FakeState:
    def __init__(self, path: Path | None = None, initial: dict | None = None, latency: float = 0.0) -> None:
        self.path = Path(path) if path else None
        self.latency = latency
        self._mem = initial or {}
        self._lock = threading.Lock()
        if self.path and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(initial or {}))

    @contextlib.contextmanager
    def edit(self):
        """Yield the state dict; changes are saved when the block ends."""
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            if self.path is None:
                yield self._mem
                return
            with open(self.path.with_suffix(".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                data = json.loads(self.path.read_text() or "{}")
                yield data
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                tmp.replace(self.path)

    def read(self) -> dict:
        with self.edit() as data:
            return json.loads(json.dumps(data))

    def record(self, data: dict, verb: str, **args) -> None:
        data.setdefault("calls", []).append({"ts": time.time(), "verb": verb, **args})
