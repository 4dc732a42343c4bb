"""Wiring: build the long-lived objects from a Config. Used by the CLI and by `serve`;
nothing else constructs a Store or a Renderer."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config, ensure_secret_file
from .metrics import Metrics
from .render import Renderer
from .store import Store


@dataclass
class Services:
    cfg: Config
    store: Store
    renderer: Renderer
    key: str
    metrics: Metrics

    def admin_token(self) -> str:
        return ensure_secret_file(self.cfg.server.admin_token_file)

    def close(self) -> None:
        self.store.close()


def build(cfg: Config) -> Services:
    store = Store(cfg.server.db_url)
    key = ensure_secret_file(cfg.server.secret_key_file)
    return Services(cfg=cfg, store=store, renderer=Renderer(cfg, store, key), key=key, metrics=Metrics())
