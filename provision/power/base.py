"""Power control: the PowerDriver interface every BMC driver implements, and its errors.

Errors name the node and the BMC address, never the password."""

from __future__ import annotations

from typing import Literal, Protocol

from ..errors import ProvisionError

PowerState = Literal["on", "off"]
PowerAction = Literal["on", "off", "cycle", "reset"]
BootDevice = Literal["network", "disk"]


class PowerError(ProvisionError):
    retryable = False

    def __init__(self, node: str, address: str, message: str) -> None:
        super().__init__(f"node {node}: BMC {address}: {message}")
        self.node, self.address = node, address


class PowerAuthError(PowerError):
    """The BMC refused the credentials."""


class PowerUnreachable(PowerError):
    """No answer from the BMC (transient: retried)."""

    retryable = True


class PowerTimeout(PowerError):
    """The call did not finish within its hard timeout (transient: retried)."""

    retryable = True


class PowerRejected(PowerError):
    """The BMC answered but refused the request (e.g. a boot device it does not support)."""


class PowerDriver(Protocol):
    def validate(self) -> None:
        """Check the configuration (credentials file readable, address sane) without the network."""

    def get_power_state(self) -> PowerState: ...

    def set_power_state(self, action: PowerAction) -> None: ...

    def set_boot_device(self, device: BootDevice, persistent: bool = False, uefi: bool = False) -> None: ...

    def netboot(self, uefi: bool, once: str | None = None) -> str:
        """One-shot network boot, then power-cycle if on / power-on if off, in one BMC session.
        Returns 'cycle' or 'on' (what was done). With `once` (an operation key), at most once
        per key, across processes and crashes: a repeated call returns 'already'."""
