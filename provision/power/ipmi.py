"""IPMI power driver on pyghmi (imported only by ipmi_worker, in a child process).

Discipline (pyghmi's session cache hangs on a second session to the same BMC): one operation
per BMC at a time (a lock per address:port), one session per operation, logged out, in a child
process killed after a hard timeout; transient failures (unreachable, timeout) are retried a
bounded number of times with backoff; wrong credentials and rejections are not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..secretfiles import read_secret
from .base import (
    PowerAuthError,
    PowerError,
    PowerRejected,
    PowerTimeout,
    PowerUnreachable,
)
from .once import BmcDriver, BmcLocks, Factory, once_lock

_KINDS = {"auth": PowerAuthError, "unreachable": PowerUnreachable, "rejected": PowerRejected}


class IpmiDriver(BmcDriver):
    def get_power_state(self) -> str:
        return self._run([["get_power"]])[0]

    def set_power_state(self, action: str) -> None:
        if action == "cycle":
            self._run([["set_power", "off", True], ["set_power", "on", False]])
        else:
            self._run([["set_power", action, False]])

    def set_boot_device(self, device: str, persistent: bool = False, uefi: bool = False) -> None:
        self._run([["set_bootdev", "network" if device == "network" else "hd", persistent, uefi]])

    def netboot(self, uefi: bool, once: str | None = None) -> str:
        return self._run([["netboot", uefi]], once=once)[0]

    # -- the one chokepoint for every BMC call ----------------------------------------------
    def _run(self, ops: list, once: str | None = None) -> list:
        return self._retrying(self._once, ops, once)

    def _once(self, ops: list, once: str | None = None) -> list:
        """One worker process. With `once`, at most once across processes: the worker inherits
        an flock on the node's lock file and writes `<once>.done` when the BMC accepted the
        operation; a later call (a resumed run after kill -9) takes the lock, which waits for an
        orphaned worker, and finds the marker instead of acting again."""
        password = read_secret(Path(self.bmc.password_file), None, f"node {self.node}: bmc.password_file")
        req = {"address": self.bmc.address, "port": self.bmc.port, "username": self.bmc.username,
               "password": password, "ops": ops}
        with self.locks.get(self.label), once_lock(self.state_dir, self.node, self.label, self.timeout,
                                                   once) as (marker, held_fds):
            if marker is not None and marker.exists():
                return ["already"]
            if marker is not None:
                req["marker"] = str(marker)
            proc = subprocess.Popen([sys.executable, "-m", "provision.power.ipmi_worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                    pass_fds=held_fds)
            try:
                out, _ = proc.communicate(json.dumps(req), timeout=self.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise PowerTimeout(self.node, self.label, f"no result within {self.timeout:.0f} s") from None
        try:
            res = json.loads(out)
        except json.JSONDecodeError:
            raise PowerError(self.node, self.label, f"IPMI worker failed (exit {proc.returncode})") from None
        if not res["ok"]:
            raise _KINDS.get(res["kind"], PowerError)(self.node, self.label, res["message"])
        return res["results"]


class IpmiFactory(Factory):
    driver = IpmiDriver


__all__ = ["BmcLocks", "IpmiDriver", "IpmiFactory"]
