"""Redfish power driver on sushy, the Redfish client OpenStack Ironic uses.

`bmc.address` is the BMC's URL; the service root is `<address>/redfish/v1`. The system driven is
`bmc.system` (a Systems member id), or the only member when there is one. Same discipline as the
IPMI driver: one operation per BMC at a time in a process, hard timeouts (connect and read),
transient failures (unreachable, timeouts, 5xx) retried a bounded number of times with backoff,
refused credentials and refused requests not; at-most-once netboot across processes (once.py).
Every boot override is read back: a BMC that answers 2xx but keeps another target is refused."""

from __future__ import annotations

import logging
from pathlib import Path

import sushy
from sushy import exceptions as sx
from sushy.auth import BasicAuth

from ..config import read_secret
from ..errors import InputError
from .base import PowerAuthError, PowerRejected, PowerUnreachable
from .once import BmcDriver, Factory, once_lock, write_marker

logging.getLogger("sushy").setLevel(logging.WARNING)  # its debug lines carry request headers

TARGETS = {"network": sushy.BootSource.PXE, "disk": sushy.BootSource.HDD, "cd": sushy.BootSource.CD}
_ON = {sushy.PowerState.ON, sushy.PowerState.POWERING_ON}


class RedfishDriver(BmcDriver):
    def validate(self) -> None:
        super().validate()
        if isinstance(self.bmc.verify, str) and not Path(self.bmc.verify).is_file():
            raise InputError(f"node {self.node}: bmc.verify {self.bmc.verify} is not a readable CA bundle file")

    # -- the PowerDriver interface ------------------------------------------------------------
    def get_power_state(self) -> str:
        return self._run(lambda system: "on" if system.power_state in _ON else "off")

    def set_power_state(self, action: str) -> None:
        self._run(lambda system: self._power(system, action))

    def set_boot_device(self, device: str, persistent: bool = False, uefi: bool = False) -> None:
        self._run(lambda system: self._boot(system, device, persistent, uefi))

    def netboot(self, uefi: bool, once: str | None = None) -> str:
        return self.boot_from("network", uefi, once)

    def boot_from(self, device: str, uefi: bool, once: str | None = None) -> str:
        """One-shot boot from `device` ("network", or "cd": the inserted virtual media), then cycle
        or power on; at most once per `once` key."""
        def op(system) -> str:
            self._boot(system, device, False, uefi)
            return self._power(system, "cycle")
        return self._run(op, once=once)

    def insert_media(self, url: str) -> str:
        """Insert the image at `url` in the BMC's CD virtual media (read-only); its id."""
        def op(system) -> str:
            media = self._cd(system)
            media.insert_media(url, inserted=True, write_protected=True)
            media.refresh()
            if not media.inserted or media.image != url:
                raise _Refused(f"virtual media {media.identity}: insert of {url} not held "
                               f"(inserted {media.inserted}, image {media.image})")
            return media.identity
        return self._run(op)

    def eject_media(self) -> bool:
        """Take the media out of the CD; False when the BMC says nothing is inserted (already out)."""
        def op(system) -> bool:
            media = self._cd(system)
            if not media.inserted:
                return False
            media.eject_media()
            return True
        return self._run(op)

    @staticmethod
    def _cd(system):
        for media in _virtual_media(system):
            if {_val(t) for t in media.media_types or ()} & {"CD", "DVD"}:
                return media
        raise _Refused("the BMC offers no CD/DVD virtual media")

    def check(self) -> dict:
        """What `provision check` reports: power state, reset types, boot targets, virtual media."""
        def op(system) -> dict:
            media = [(m.identity, sorted(_val(t) for t in m.media_types or ())) for m in _virtual_media(system)]
            return {"power": "on" if system.power_state in _ON else "off",
                    "reset": sorted(_val(v) for v in system.get_allowed_reset_system_values()),
                    "boot_targets": sorted(_val(v) for v in system.boot.allowed_values or ()),
                    "virtual_media": media}
        return self._run(op)

    # -- operations on a system ---------------------------------------------------------------
    @staticmethod
    def _power(system, action: str) -> str:
        allowed = system.get_allowed_reset_system_values()
        on = system.power_state in _ON
        if action == "on" or (action == "cycle" and not on):
            reset, done = sushy.ResetType.ON, "on"
        elif action == "off":
            reset, done = sushy.ResetType.FORCE_OFF, "off"
        elif sushy.ResetType.POWER_CYCLE in allowed and action == "cycle":
            reset, done = sushy.ResetType.POWER_CYCLE, "cycle"
        else:  # cycle without PowerCycle, or reset: a hard restart
            reset, done = sushy.ResetType.FORCE_RESTART, "cycle"
        if on and reset == sushy.ResetType.ON:
            return "on"  # already on
        if allowed and reset not in allowed:
            raise _Refused(f"reset {_val(reset)} is not one the BMC offers ({', '.join(sorted(_val(v) for v in allowed))})")
        system.reset_system(reset)
        return done

    @staticmethod
    def _boot(system, device: str, persistent: bool, uefi: bool) -> None:
        target = TARGETS[device]
        mode = sushy.BootSourceOverrideMode.UEFI if uefi else sushy.BootSourceOverrideMode.LEGACY
        enabled = sushy.BootSourceOverrideEnabled.CONTINUOUS if persistent else sushy.BootSourceOverrideEnabled.ONCE
        system.set_system_boot_options(target=target, enabled=enabled, mode=mode)
        system.refresh()
        got = system.boot.target, system.boot.mode
        if got[0] != target or (got[1] is not None and got[1] != mode):
            raise _Refused(f"boot override {_val(target)}/{_val(mode)} not held: the BMC reports "
                           f"{_val(got[0])}/{_val(got[1])}")

    # -- the one chokepoint for every BMC call ------------------------------------------------
    def _run(self, op, once: str | None = None):
        return self._retrying(self._once, op, once)

    def _once(self, op, once: str | None):
        password = read_secret(Path(self.bmc.password_file), None, f"node {self.node}: bmc.password_file")
        with self.locks.get(self.label), once_lock(self.state_dir, self.node, self.label, self.timeout,
                                                   once) as (marker, _fds):
            if marker is not None and marker.exists():
                return "already"
            try:
                # Basic auth, no session: a session per operation would pile up on BMCs that allow few
                conn = sushy.Sushy(f"{self.bmc.address}/redfish/v1", auth=BasicAuth(self.bmc.username, password),
                                   verify=self.bmc.verify, read_timeout=self.timeout,
                                   connect_timeout=min(10.0, self.timeout), server_side_retries=0)
                result = op(self._system(conn))
            except _Refused as exc:
                raise PowerRejected(self.node, self.label, str(exc)) from None
            except sx.AccessError as exc:
                raise PowerAuthError(self.node, self.label, f"credentials refused (HTTP {exc.status_code})") from None
            except (sx.ConnectionError, sx.ServerSideError) as exc:
                raise PowerUnreachable(self.node, self.label, _reason(exc)) from None
            except (sx.HTTPError, sx.InvalidParameterValueError, sx.MissingAttributeError) as exc:
                raise PowerRejected(self.node, self.label, _reason(exc)) from None
            if marker is not None:
                write_marker(marker)
            return result

    def _system(self, conn):
        if self.bmc.system:
            return conn.get_system(f"/redfish/v1/Systems/{self.bmc.system}")
        members = conn.get_system_collection().members_identities
        if len(members) != 1:
            names = ", ".join(m.rstrip("/").rsplit("/", 1)[-1] for m in members) or "none"
            raise _Refused(f"{len(members)} Redfish systems ({names}): set bmc.system to the one to drive")
        return conn.get_system(members[0])


class RedfishFactory(Factory):
    driver = RedfishDriver


class _Refused(Exception):
    """A request this driver refuses or finds not held (becomes PowerRejected)."""


def _virtual_media(system):
    """Every virtual media device of the system's managers (a manager may have none)."""
    for manager in system.managers:
        try:
            yield from manager.virtual_media.get_members()
        except sx.MissingAttributeError:
            continue


def _val(value) -> str:
    """An enum member's value, or the string sushy left as it was (a value it does not know)."""
    return str(getattr(value, "value", value))


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
