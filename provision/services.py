"""Wiring: build the long-lived objects from a Config. Used by the CLI and by `serve`;
nothing else constructs a Store, a Renderer or an integration client."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet

from .config import Config
from .core.denials import Denials
from .integrations import Unconfigured
from .integrations import directory as directory_mod
from .integrations.dns import DnsChecker, FakeDns
from .integrations.engine import FakeEngine
from .integrations.fakestate import FakeState
from .integrations.foreman import ForemanSatellite
from .integrations.freeipa import FreeIpa
from .integrations.ipa import FakeIpa
from .integrations.ovirt import OvirtEngine
from .integrations.satellite import FakeSatellite
from .metrics import Metrics
from .power.drivers import DriverFactory
from .power.seen import Seen
from .render import Renderer
from .render.cache import BootCache
from .secretfiles import ensure_secret_file, read_secret
from .store import Store
from .store.schema import NoDatabase
from .workflow.bootprobe import BootProbe

if TYPE_CHECKING:
    from .integrations.dns import Dns
    from .integrations.engine import Engine
    from .integrations.ipa import Ipa
    from .integrations.satellite import Satellite
    from .tftp.engine import TftpService
    from .web.gate import Gate
    from .workflow.conductor import Conductor


@dataclass(frozen=True)
class Services:
    """Everything long-lived, built once by `build` from a Config and never changed after: the
    store, the renderer and its cache, metrics, one client per external system, and the power
    driver factory. Steps, the CLI and the web app all take this one object. `serve` adds its own
    listeners (tftp, gate, conductor) with `dataclasses.replace`, making a new one."""
    cfg: Config
    store: Store
    renderer: Renderer
    key: str
    metrics: Metrics
    bootcache: BootCache
    power: Callable  # node -> PowerDriver
    engine: Engine
    ipa: Ipa
    satellite: Satellite
    dns: Dns
    bootcheck: Callable | None = None  # node -> str; raises if the node would not get its install config
    poll: float = 2.0  # how often a waiting step re-reads its node when no change was signalled
    denials: Denials = field(default_factory=Denials)  # refusals told in event logs at a bounded rate
    tftp: TftpService | None = None  # serve's
    gate: Gate | None = None
    conductor: Conductor | None = None
    directory: Any = None  # integrations.directory: console and API accounts ([auth])

    def admin_token(self) -> str:
        return ensure_secret_file(self.cfg.server.admin_token_file)

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

    def close(self) -> None:
        self.store.close()


def integrations(cfg: Config) -> dict:
    fake, lat = cfg.integrations.fake_dir, cfg.integrations.fake_latency
    if fake is not None:
        return {"engine": FakeEngine(FakeState(fake / "engine.json", latency=lat), poll=max(lat, 0.05)),
                "ipa": FakeIpa(FakeState(fake / "ipa.json", latency=lat)),
                "satellite": FakeSatellite(FakeState(fake / "satellite.json", latency=lat)), "dns": FakeDns()}
    dns = DnsChecker(cfg.dns.nameservers, cfg.dns.port, cfg.dns.timeout)
    return {
        "engine": OvirtEngine(cfg.engine, poll=cfg.engine.poll_interval) if cfg.engine.url else Unconfigured("engine", "[engine] url"),
        "ipa": FreeIpa(cfg.ipa, discover=dns.ipa_servers) if cfg.ipa.server or cfg.ipa.domain
        else Unconfigured("ipa", "[ipa] server (or domain, for SRV discovery)"),
        "satellite": ForemanSatellite(cfg.satellite) if cfg.satellite.url else Unconfigured("satellite", "[satellite] url"),
        "dns": dns,
    }


def build(cfg: Config, *, power=None, bootcheck=None, create: bool = True, **overrides) -> Services:
    """`bootcheck=False` leaves out the pre-power check of the served install config (unit tests
    of the workflow that run no server). `create=False`: a database that does not exist yet is an
    InputError saying where it was looked for, not a new empty one (every CLI command but `serve`
    and `node import`)."""
    try:
        store = Store(cfg.server.db_url, create=create)
    except NoDatabase as exc:
        raise NoDatabase(f"{exc}; the config ({cfg.source}) puts the database there. `provision serve` or "
                         "`provision node import` creates one; --config or --state-dir names an existing one") from None
    key = ensure_secret_file(cfg.server.secret_key_file)
    d = cfg.defaults
    power = power or DriverFactory(cfg.paths.state_dir / "power", timeout=d.ipmi_timeout, attempts=d.ipmi_attempts,
                                   post_attempts=d.redfish_post_attempts, post_delay=d.redfish_post_delay)
    clients = integrations(cfg) | {"directory": directory_mod.directory(cfg.auth, read_secret)} | overrides
    bootcheck = BootProbe(cfg) if bootcheck is None else (bootcheck or None)
    renderer = Renderer(cfg, store, key)
    power = Seen(power, store.record_power)
    metrics = Metrics()
    metrics.watch(store, cfg)
    return Services(cfg=cfg, store=store, renderer=renderer, key=key, metrics=metrics,
                    bootcache=BootCache(store, renderer, export=cfg.paths.boot_export), power=power, poll=d.poll_interval, bootcheck=bootcheck,
                    **clients)
