"""In-memory power driver: records every call; failures and latency can be injected."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .base import PowerAuthError, PowerRejected, PowerUnreachable


@dataclass
class FakeBmc:
    power: str = "on"
    boot: str = "disk"
    uefi: bool = False
    calls: list[tuple[float, str]] = field(default_factory=list)
    fail: str | None = None  # 'auth' | 'unreachable' | 'rejected'
    latency: float = 0.0
    done_keys: set[str] = field(default_factory=set)
    media: str | None = None  # the virtual CD's image URL

    def cycles(self) -> int:
        return sum(1 for _, c in self.calls if c in ("cycle", "on-from-off"))


class FakePowerFactory:
    def __init__(self, latency: float = 0.0, on_netboot=None) -> None:
        self.bmcs: dict[str, FakeBmc] = {}
        self.latency, self.on_netboot = latency, on_netboot
        self._lock = threading.Lock()

    def __call__(self, node) -> FakeDriver:
        with self._lock:
            bmc = self.bmcs.setdefault(node.name, FakeBmc(latency=self.latency))
        return FakeDriver(node.name, node.bmc.label, bmc, self.on_netboot)


class FakeDriver:
    def __init__(self, node: str, label: str, bmc: FakeBmc, on_netboot=None) -> None:
        self.node, self.label, self.bmc, self.on_netboot = node, label, bmc, on_netboot

    def _call(self, what: str) -> None:
        if self.bmc.latency:
            time.sleep(self.bmc.latency)
        if self.bmc.fail == "auth":
            raise PowerAuthError(self.node, self.label, "Incorrect password provided")
        if self.bmc.fail == "unreachable":
            raise PowerUnreachable(self.node, self.label, "no answer")
        if self.bmc.fail == "rejected" and what.startswith("boot"):
            raise PowerRejected(self.node, self.label, "set_bootdev: invalid data field (0xcc)")
        self.bmc.calls.append((time.time(), what))

    def validate(self) -> None:
        pass

    def get_power_state(self) -> str:
        self._call("get")
        return self.bmc.power

    def set_power_state(self, action: str) -> None:
        self._call(action)
        self.bmc.power = "off" if action == "off" else "on"

    def set_boot_device(self, device: str, persistent: bool = False, uefi: bool = False) -> None:
        self._call(f"boot-{device}")
        self.bmc.boot, self.bmc.uefi = device, uefi

    def check(self, uefi: bool | None = None, device: str | None = None) -> dict:
        """What a Redfish driver's check reports, for a fake BMC that can do anything it is asked."""
        self._call("check")
        target = {"network": "Pxe", "cd": "Cd", "disk": "Hdd"}.get(device or "", "")
        return {"power": self.bmc.power, "reset": ["ForceOff", "ForceRestart", "On"], "boot_targets": ["Cd", "Hdd", "Pxe"],
                "virtual_media": [("Cd", ["CD", "DVD"])], "media_home": "Managers/1", "vendor": "fake BMC",
                "mode": None, "plan": [f"one-time boot override {target}"] if target else [], "problems": []}

    def insert_media(self, url: str) -> str:
        self._call("insert-media")
        self.bmc.media = url
        return "Cd"

    def eject_media(self) -> bool:
        self._call("eject-media")
        was, self.bmc.media = self.bmc.media, None
        return was is not None

    def boot_from(self, device: str, uefi: bool, once: str | None = None) -> str:
        if once is not None and once in self.bmc.done_keys:
            return "already"
        self.set_boot_device(device, False, uefi)
        action = "cycle" if self.bmc.power == "on" else "on-from-off"
        self._call(action)
        self.bmc.power = "on"
        if once is not None:
            self.bmc.done_keys.add(once)
        if self.on_netboot:
            self.on_netboot(self.node)
        return "cycle" if action == "cycle" else "on"

    def netboot(self, uefi: bool, once: str | None = None) -> str:
        return self.boot_from("network", uefi, once)
