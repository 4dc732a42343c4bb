"""Shared pieces for workflow tests: an inventory on loopback addresses, fake systems seeded
with the hosts, and a fake installer that plays the node."""

from __future__ import annotations

import copy
import threading
import time

import yaml

from provision import tokens
from provision.domain import parse_nodes

from .conftest import EXAMPLE

NAMES = ["rhvnode3", "rhvnode4", "rhvnode5"]


def loopback_inventory(bmc_ports: dict[str, int] | None = None, pw_file: str | None = None) -> dict:
    """The example inventory with management addresses on 127.0.10.0/24 (so a test can send
    callbacks from the node's own address) and BMCs on given loopback ports."""
    data = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    for i, n in enumerate(data["nodes"]):
        mgmt = n["facts"]["networks"][0]
        mgmt["address"], mgmt["gateway"] = f"127.0.10.{11 + i}/24", "127.0.10.1"
        if bmc_ports:
            n["bmc"]["port"] = bmc_ports[n["name"]]
        if pw_file:
            n["bmc"]["password_file"] = pw_file
    return data


def mgmt_ip(i: int) -> str:
    return f"127.0.10.{11 + i}"


def seed_fakes(engine_state, ipa_state, sat_state) -> None:
    with engine_state.edit() as d:
        d["hosts"] = {f"id-{n}": {"id": f"id-{n}", "name": n, "status": "up", "cluster": "ocpcluster",
                                  "address": f"{n}.lab.example.com"} for n in NAMES + ["rhvnode9"]}
    with ipa_state.edit() as d:
        d["hosts"] = {f"{n}.lab.example.com": {"hostgroups": ["hypervisors", f"rack-{i}"]} for i, n in enumerate(NAMES)}
    with sat_state.edit() as d:
        d["hosts"] = {f"{n}.lab.example.com": {"id": i} for i, n in enumerate(NAMES)}


def import_nodes(store, data) -> None:
    store.import_nodes(parse_nodes(data))


class FakeInstaller(threading.Thread):
    """Plays each node in process: once its BMC was power-cycled and its build is armed, posts
    `installed` then `enrolled` through the callback handler, from the node's own address."""

    def __init__(self, ctx, cycled, handle, fail: set[str] | None = None) -> None:
        super().__init__(daemon=True)
        self.ctx, self.cycled, self.handle, self.fail = ctx, cycled, handle, fail or set()
        self.replies: dict[str, dict] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        pending = set(NAMES)
        while pending and not self.stop.is_set():
            for i, name in enumerate(NAMES):
                if name not in pending or not self.cycled(name):
                    continue
                build = self.ctx.store.active_build(name)
                if build is None:
                    continue
                token = tokens.derive(self.ctx.key, build.nonce)
                if name in self.fail:
                    self.handle(self.ctx, token, "failed", mgmt_ip(i), b"anaconda: no disk found\n")
                    pending.discard(name)
                    continue
                reply = self.handle(self.ctx, token, "installed", mgmt_ip(i), b"")
                if reply.status == 200:
                    self.replies[name] = reply.body
                    assert self.handle(self.ctx, token, "enrolled", mgmt_ip(i), b"").status == 200
                    pending.discard(name)
            time.sleep(0.02)


def build_wf(tmp_path):
    """Services on in-memory fakes (engine, IPA, Satellite, DNS, BMCs) with the example inventory
    on loopback addresses: the workflow in process. The caller closes it."""
    from provision import config as config_mod
    from provision import services
    from provision.integrations.dns import FakeDns
    from provision.integrations.engine import FakeEngine
    from provision.integrations.fakestate import FakeState
    from provision.integrations.ipa import FakeIpa
    from provision.integrations.satellite import FakeSatellite
    from provision.power.fake import FakePowerFactory

    from .conftest import write_config

    cfg = write_config(tmp_path, extra='\n[defaults]\npoll_interval = 0.02\n'
                                       'step_timeouts = {drain = 5, installing = 30, enroll = 30, register = 5}\n')
    states = {k: FakeState() for k in ("engine", "ipa", "sat")}
    seed_fakes(states["engine"], states["ipa"], states["sat"])
    power = FakePowerFactory()
    svc = services.build(config_mod.load(cfg), power=power, bootcheck=False, engine=FakeEngine(states["engine"], poll=0.01),
                         ipa=FakeIpa(states["ipa"]), satellite=FakeSatellite(states["sat"]), dns=FakeDns())
    (tmp_path / "bmc.pw").write_text("password\n")
    import_nodes(svc.store, loopback_inventory(pw_file=str(tmp_path / "bmc.pw")))
    return with_fakes(svc, states)


def with_fakes(svc, states: dict):
    """`svc` with the fakes' states beside it (`.fakes`), for tests to read and edit."""
    import dataclasses

    from provision.services import Services

    @dataclasses.dataclass(frozen=True)
    class Lab(Services):
        fakes: dict = dataclasses.field(default_factory=dict)

    return Lab(**{f.name: getattr(svc, f.name) for f in dataclasses.fields(svc)}, fakes=states)


def cycled(wf):
    return lambda name: name in wf.power.bmcs and wf.power.bmcs[name].cycles() >= 1


def stub_media(root, profile_media: str = "rhvh", liveimg: str = "ovirt-node-ng-image.squashfs.img") -> None:
    """What `media import` and the loaders in [paths] bootfiles leave for a node to boot, as small
    stand-ins under a test's tmp dir (`root` holds bootfiles/ and media/): the gate before retire
    fetches each of them as the node will."""
    from pathlib import Path

    root = Path(root)
    for loader in ("shimx64.efi", "grubx64.efi", "pxelinux.0", "ldlinux.c32"):
        (root / "bootfiles").mkdir(exist_ok=True)
        (root / "bootfiles" / loader).write_bytes(b"L" * 2048)
    images = root / "media" / profile_media / "images"
    (images / "pxeboot").mkdir(parents=True, exist_ok=True)
    (images / "pxeboot" / "vmlinuz").write_bytes(b"k" * 4096)
    (images / "pxeboot" / "initrd.img").write_bytes(b"i" * 8192)
    (images / "install.img").write_bytes(b"s" * 4096)
    (root / "media" / profile_media / liveimg).write_bytes(b"q" * 4096)
