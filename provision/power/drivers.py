"""The power driver of each node, by its `bmc.driver`: IPMI (pyghmi) or Redfish (sushy)."""

from __future__ import annotations

from pathlib import Path

from .ipmi import IpmiFactory
from .redfish import RedfishFactory


class DriverFactory:
    def __init__(self, state_dir: Path, *, timeout: float = 30.0, attempts: int = 3) -> None:
        self.ipmi = IpmiFactory(state_dir, timeout=timeout, attempts=attempts)
        self.redfish = RedfishFactory(state_dir, timeout=timeout, attempts=attempts)

    def __call__(self, node):
        return (self.redfish if node.bmc.driver == "redfish" else self.ipmi)(node)
