"""The power driver of each node, by its `bmc.driver`: IPMI (pyghmi) or Redfish (sushy)."""

from __future__ import annotations

from pathlib import Path

from .ipmi import IpmiFactory
from .redfish import RedfishFactory


class DriverFactory:
    def __init__(self, state_dir: Path, *, timeout: float = 30.0, attempts: int = 3, post_attempts: int = 6,
                 post_delay: float = 5.0) -> None:
        self.ipmi = IpmiFactory(state_dir, timeout=timeout, attempts=attempts)
        self.redfish = RedfishFactory(state_dir, timeout=timeout, attempts=attempts, post_attempts=post_attempts,
                                      post_delay=post_delay)

    def __call__(self, node):
        return (self.redfish if node.bmc.driver == "redfish" else self.ipmi)(node)
