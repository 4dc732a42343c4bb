"""What steps get: the store, the config, and one client per external system."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet

from ..config import Config
from ..integrations.dns import Dns
from ..integrations.engine import Engine
from ..integrations.ipa import Ipa
from ..integrations.satellite import Satellite
from ..store import Store


@dataclass
class Context:
    cfg: Config
    store: Store
    key: str
    power: Callable  # node -> PowerDriver
    engine: Engine
    ipa: Ipa
    satellite: Satellite
    dns: Dns
    bootcheck: Callable | None = None  # node -> str; raises if the node would not get its install config
    poll: float = 2.0  # how often a waiting step re-reads its node when no change was signalled

    def timeout(self, step: str) -> float | None:
        return self.cfg.defaults.step_timeouts.get(step)

    # Enrollment replies carry the IPA one-time password: stored encrypted with the server key,
    # only until the node reports `enrolled`.
    def _fernet(self) -> Fernet:
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"enroll:" + self.key.encode()).digest()))

    def seal(self, value: dict) -> str:
        return self._fernet().encrypt(json.dumps(value).encode()).decode()

    def unseal(self, token: str) -> dict:
        return json.loads(self._fernet().decrypt(token.encode()))
