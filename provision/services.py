"""Wiring: build the long-lived objects from a Config. Used by the CLI and by `serve`;
nothing else constructs a Store, a Renderer or an integration client."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config, ensure_secret_file
from .integrations import Unconfigured
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
from .render import Renderer
from .render.cache import BootCache
from .store import Store
from .workflow.bootprobe import BootProbe
from .workflow.context import Context


@dataclass
class Services:
    cfg: Config
    store: Store
    renderer: Renderer
    key: str
    metrics: Metrics
    workflow: Context
    bootcache: BootCache

    def admin_token(self) -> str:
        return ensure_secret_file(self.cfg.server.admin_token_file)

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


def build(cfg: Config, *, power=None, bootcheck=None, **overrides) -> Services:
    """`bootcheck=False` leaves out the pre-power check of the served install config (unit tests
    of the workflow that run no server)."""
    store = Store(cfg.server.db_url)
    key = ensure_secret_file(cfg.server.secret_key_file)
    d = cfg.defaults
    power = power or DriverFactory(cfg.paths.state_dir / "power", timeout=d.ipmi_timeout, attempts=d.ipmi_attempts,
                                   post_attempts=d.redfish_post_attempts, post_delay=d.redfish_post_delay)
    clients = integrations(cfg) | overrides
    bootcheck = BootProbe(cfg) if bootcheck is None else (bootcheck or None)
    workflow = Context(cfg=cfg, store=store, key=key, power=power, poll=d.poll_interval, bootcheck=bootcheck,
                       **clients)
    renderer = Renderer(cfg, store, key)
    return Services(cfg=cfg, store=store, renderer=renderer, key=key, metrics=Metrics(), workflow=workflow,
                    bootcache=BootCache(store, renderer))
