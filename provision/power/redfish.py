"""Redfish power driver on sushy, the Redfish client OpenStack Ironic uses.

`bmc.address` is the BMC's URL; the service root is `<address>/redfish/v1`. The system driven is
`bmc.system` (a Systems member id), or the only member when there is one. Same discipline as the
IPMI driver: one operation per BMC at a time in a process, hard timeouts (connect and read),
transient failures (unreachable, timeouts, 5xx) retried a bounded number of times with backoff,
refused credentials and refused requests not; at-most-once netboot across processes (once.py).
Every boot override is read back: a BMC that answers 2xx but keeps another target is refused.

What vendors' BMCs refuse that an emulator accepts, handled as Ironic and sushy handle it
(openstack/ironic drivers/modules/redfish/management.py and boot.py; openstack/sushy
resources/system/system.py, resources/manager/virtual_media.py):
- the boot mode (BootSourceOverrideMode) is written only when it differs from what the BMC reports,
  in a request of its own: HPE iLO 5 and iDRAC 8 refuse writing it (400). A mode the BMC will not
  change is a clear refusal ("set it in the firmware setup"), never a half-set override;
- BootSourceOverrideEnabled is sent only when it differs (story 2007355), but always to Supermicro,
  which ignores a target without it (story 2008547);
- iLO refuses boot changes while the host is in POST (`UnableToModifyDuringSystemPOST`): asked
  again with backoff, `post_attempts` times in all (Ironic's post_boot_retry_*);
- a PATCH carries the resource's ETag in If-Match (sushy does; iLO 5 requires it);
- virtual media is looked up under the System first (iDRAC 9 >= 6.00.02, iDRAC 10:
  `Systems/…/VirtualMedia`), then under its Managers;
- a CD override on Supermicro X11/X12 is `UsbCd` (sushy maps it): the read-back accepts it;
- media is ejected before an insert (Ironic always does; a failed build leaves media inserted);
  BMCs with no InsertMedia action (Lenovo XCC) are driven by PATCH (sushy's fallback)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sushy
from sushy import exceptions as sx
from sushy.auth import BasicAuth
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from ..errors import InputError
from ..integrations.http import cause
from ..secretfiles import read_secret
from .base import PowerAuthError, PowerRejected, PowerUnreachable
from .once import BmcDriver, Factory, once_lock, write_marker

logging.getLogger("sushy").setLevel(logging.WARNING)  # its debug lines carry request headers

TARGETS = {"network": sushy.BootSource.PXE, "disk": sushy.BootSource.HDD, "cd": sushy.BootSource.CD}
# what a BMC may report back for a target that was set: sushy sends UsbCd for Cd on Supermicro
HELD = {sushy.BootSource.CD: {sushy.BootSource.CD, sushy.BootSource.USB_CD}}
_ON = {sushy.PowerState.ON, sushy.PowerState.POWERING_ON}


class RedfishDriver(BmcDriver):
    def __init__(self, *args, post_attempts: int = 6, post_delay: float = 5.0, **kw) -> None:
        super().__init__(*args, **kw)
        self.post_attempts, self.post_delay = post_attempts, post_delay

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
            if media.inserted:  # what a failed build left, or a stale image: out first, as Ironic does
                media.eject_media()
                media.refresh()
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
        for media in _media_home(system)[1]:
            if {_val(t) for t in media.media_types or ()} & {"CD", "DVD"}:
                return media
        raise _Refused("the BMC offers no CD/DVD virtual media")

    def check(self, uefi: bool | None = None, device: str | None = None) -> dict:
        """What `provision check` and preflight report, read only: power state, reset types, boot
        targets, where virtual media lives, and, given the node's firmware and boot device, what a
        netboot will write (`plan`) or why it cannot (`problems`)."""
        def op(system) -> dict:
            where, members = _media_home(system)
            media = [(m.identity, sorted(_val(t) for t in m.media_types or ())) for m in members]
            targets = sorted(_val(v) for v in system.boot.allowed_values or ())
            info: dict[str, Any] = {"power": "on" if system.power_state in _ON else "off",
                    "reset": sorted(_val(v) for v in system.get_allowed_reset_system_values()),
                    "boot_targets": targets, "virtual_media": media, "media_home": where,
                    "vendor": " ".join(x for x in (system.manufacturer, system.model) if x),
                    "mode": _val(system.boot.mode) if system.boot.mode else None, "plan": [], "problems": []}
            if device is not None:
                target = _target(system, device)
                if targets and _val(target) not in targets:
                    info["problems"].append(f"boot target {_val(target)} is not one the BMC offers ({', '.join(targets)})")
                info["plan"].append(f"one-time boot override {_val(target)}")
                if uefi is not None:
                    mode = _mode(uefi)
                    modes = ((system.json or {}).get("Boot") or {}).get("BootSourceOverrideMode@Redfish.AllowableValues")
                    if system.boot.mode is None:
                        info["plan"].append("boot mode not reported: left as the firmware has it")
                    elif system.boot.mode == mode:
                        info["plan"].append(f"boot mode {_val(mode)} already: not written")
                    elif modes and _val(mode) in modes:
                        info["plan"].append(f"boot mode {_val(system.boot.mode)} -> {_val(mode)} (the BMC offers it)")
                    else:  # iLO 5 and iDRAC 8 refuse the write: found out before anything is deleted, not at netboot
                        info["problems"].append(
                            f"the BMC reports boot mode {_val(system.boot.mode)} and the node boots {_val(mode)}: the "
                            f"override would have to change the mode, which this BMC does not offer (many refuse it); "
                            "set the boot mode in the firmware setup")
                if device == "cd":
                    if not any({"CD", "DVD"} & set(types) for _, types in media):
                        info["problems"].append("the BMC offers no CD/DVD virtual media")
                    else:
                        info["plan"].append(f"virtual media under {where}: eject, insert the build's ISO")
            return info
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

    def _boot(self, system, device: str, persistent: bool, uefi: bool) -> None:
        target, mode = TARGETS[device], _mode(uefi)
        enabled = sushy.BootSourceOverrideEnabled.CONTINUOUS if persistent else sushy.BootSourceOverrideEnabled.ONCE
        if system.boot.mode is not None and system.boot.mode != mode:  # only when it differs, on its own
            try:
                self._during_post(lambda: system.set_system_boot_options(mode=mode))
            except sx.HTTPError as exc:
                raise _Refused(f"boot mode {_val(system.boot.mode)} cannot be changed to {_val(mode)} through "
                               f"Redfish ({_reason(exc)}): set it in the firmware setup") from None
            system.refresh()
        send = enabled if (_is_supermicro(system) or system.boot.enabled != enabled) else None
        self._during_post(lambda: system.set_system_boot_options(target=target, enabled=send))
        system.refresh()
        got = system.boot.target, system.boot.mode
        if got[0] not in HELD.get(target, {target}) or (got[1] is not None and got[1] != mode):
            raise _Refused(f"boot override {_val(target)}/{_val(mode)} not held: the BMC reports "
                           f"{_val(got[0])}/{_val(got[1])}")

    def _during_post(self, call) -> None:
        """`call()`, asked again while the BMC says the host is in POST (HPE iLO)."""
        try:
            retry(retry=retry_if_exception(_in_post), stop=stop_after_attempt(self.post_attempts),
                  wait=wait_exponential(multiplier=self.post_delay, min=self.post_delay, max=self.post_delay * 6),
                  reraise=True)(call)()
        except sx.BadRequestError as exc:
            if _in_post(exc):
                raise _Refused(f"the BMC refused the boot change {self.post_attempts} times while the host was in "
                               "POST (UnableToModifyDuringSystemPOST): try again once it has booted") from None
            raise

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
            except sx.ConnectionError as exc:
                raise PowerUnreachable(self.node, self.label, cause(exc)) from None
            except sx.ServerSideError as exc:
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

    def __init__(self, state_dir: Path, *, post_attempts: int = 6, post_delay: float = 5.0, **kw) -> None:
        super().__init__(state_dir, **kw)
        self.post_attempts, self.post_delay = post_attempts, post_delay

    def __call__(self, node) -> RedfishDriver:
        return self.driver(node.name, node.bmc, self.locks, state_dir=self.state_dir, timeout=self.timeout,
                           attempts=self.attempts, backoff=self.backoff, post_attempts=self.post_attempts,
                           post_delay=self.post_delay)


class _Refused(Exception):
    """A request this driver refuses or finds not held (becomes PowerRejected)."""


def _media_home(system) -> tuple[str, list]:
    """Where the system's virtual media lives and its devices: under the System itself (iDRAC 9 >=
    6.00.02, iDRAC 10; Ironic's _has_vmedia_via_systems), else under its Managers (a manager may
    have none)."""
    try:
        return "Systems", list(system.virtual_media.get_members())
    except (sx.MissingAttributeError, AttributeError):
        pass
    for manager in system.managers:
        try:
            members = list(manager.virtual_media.get_members())
        except sx.MissingAttributeError:
            continue
        if members:
            return f"Managers/{manager.identity}", members
    return "nowhere", []


def _mode(uefi: bool):
    return sushy.BootSourceOverrideMode.UEFI if uefi else sushy.BootSourceOverrideMode.LEGACY


def _is_supermicro(system) -> bool:
    return (system.manufacturer or "").lower() == "supermicro"


def _target(system, device: str):
    """The target as it will be sent: sushy's own Supermicro mapping of Cd to UsbCd."""
    target = TARGETS[device]
    if target == sushy.BootSource.CD and _is_supermicro(system) and "UsbCd" in (system.boot.allowed_values or ()):
        return sushy.BootSource.USB_CD
    return target


def _in_post(exc: BaseException) -> bool:
    """iLO's refusal while the host is in POST (Ironic's _is_during_post_error)."""
    return isinstance(exc, sx.BadRequestError) and "UnableToModifyDuringSystemPOST" in str(exc)


def _val(value) -> str:
    """An enum member's value, or the string sushy left as it was (a value it does not know)."""
    return str(getattr(value, "value", value))


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
