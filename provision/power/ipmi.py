"""IPMI power driver on pyghmi (imported only by ipmi_worker, in a child process).

Discipline (pyghmi's session cache hangs on a second session to the same BMC): one operation
per BMC at a time (a lock per address:port), one session per operation, logged out, in a child
process killed after a hard timeout; transient failures (unreachable, timeout) are retried a
bounded number of times with backoff; wrong credentials and rejections are not."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from ..config import read_secret
from ..domain import Bmc
from ..errors import InputError
from .base import (
    PowerAuthError,
    PowerError,
    PowerRejected,
    PowerTimeout,
    PowerUnreachable,
)

_KINDS = {"auth": PowerAuthError, "unreachable": PowerUnreachable, "rejected": PowerRejected}


class BmcLocks:
    """One lock per BMC address:port, shared by every driver of one process."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


class IpmiFactory:
    """Builds an IpmiDriver per node; all share one BmcLocks."""

    def __init__(self, *, timeout: float = 30.0, attempts: int = 3, backoff: float = 1.0) -> None:
        self.locks, self.timeout, self.attempts, self.backoff = BmcLocks(), timeout, attempts, backoff

    def __call__(self, node) -> IpmiDriver:
        return IpmiDriver(node.name, node.bmc, self.locks, timeout=self.timeout, attempts=self.attempts,
                          backoff=self.backoff)


class IpmiDriver:
    def __init__(self, node: str, bmc: Bmc, locks: BmcLocks, *, timeout: float = 30.0, attempts: int = 3,
                 backoff: float = 1.0) -> None:
        self.node, self.bmc, self.locks = node, bmc, locks
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff
        self.label = f"{bmc.address}:{bmc.port}"

    def validate(self) -> None:
        if not Path(self.bmc.password_file).is_file():
            raise InputError(f"node {self.node}: bmc.password_file {self.bmc.password_file} is not a readable file")

    def get_power_state(self) -> str:
        return self._run([["get_power"]])[0]

    def set_power_state(self, action: str) -> None:
        if action == "cycle":
            self._run([["set_power", "off", True], ["set_power", "on", False]])
        else:
            self._run([["set_power", action, False]])

    def set_boot_device(self, device: str, persistent: bool = False, uefi: bool = False) -> None:
        self._run([["set_bootdev", "network" if device == "network" else "hd", persistent, uefi]])

    def netboot(self, uefi: bool) -> str:
        return self._run([["netboot", uefi]])[0]

    # -- the one chokepoint for every BMC call ----------------------------------------------
    def _run(self, ops: list) -> list:
        call = retry(
            retry=retry_if_exception(lambda e: isinstance(e, PowerError) and e.retryable),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=10),
            reraise=True,
        )(self._once)
        return call(ops)

    def _once(self, ops: list) -> list:
        password = read_secret(Path(self.bmc.password_file), None, f"node {self.node}: bmc.password_file")
        req = json.dumps({"address": self.bmc.address, "port": self.bmc.port, "username": self.bmc.username,
                          "password": password, "ops": ops})
        with self.locks.get(self.label):
            proc = subprocess.Popen([sys.executable, "-m", "provision.power.ipmi_worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                out, _ = proc.communicate(req, timeout=self.timeout)
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
