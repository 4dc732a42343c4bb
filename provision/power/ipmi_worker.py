"""One BMC session in a child process: `python -m provision.power.ipmi_worker`.

Reads {"address", "port", "username", "password", "ops": [[name, args...], ...]} as JSON on stdin
(never argv: the password must not show in `ps`), runs the ops in ONE pyghmi session, logs out,
and prints {"ok": true, "results": [...]} or {"ok": false, "kind": ..., "message": ...}.

Why a process: pyghmi keeps a process-wide session cache; a logged-out or failed session stays
in `Session.initting_sessions` and the next Command for the same BMC gets it back (TypeError or a
hang). A fresh process per operation has no such state, and the parent can kill it on timeout.
"""

from __future__ import annotations

import json
import sys


def run(req: dict) -> dict:
    from pyghmi.exceptions import IpmiException
    from pyghmi.ipmi import command

    try:
        cmd = command.Command(bmc=req["address"], userid=req["username"], password=req["password"],
                              port=int(req["port"]))
    except IpmiException as exc:
        text = str(exc)
        kind = "auth" if "password" in text.lower() or "unauthorized" in text.lower() else "unreachable"
        return {"ok": False, "kind": kind, "message": text if text != "None" else "no answer"}
    results = []
    try:
        for op, *args in req["ops"]:
            results.append(_op(cmd, op, args))
        if req.get("marker"):  # written before anything else: the parent may be gone already
            with open(req["marker"], "w") as fh:
                fh.write(str(results[-1]))
    except (IpmiException, BootNotHeld) as exc:
        return {"ok": False, "kind": "rejected", "message": f"{op}: {exc}"}
    finally:
        try:
            cmd.ipmi_session.logout()
        except Exception:  # the session may already be gone; the process ends anyway
            pass
    return {"ok": True, "results": results}


def _op(cmd, op: str, args: list):
    if op == "get_power":
        return cmd.get_power()["powerstate"]
    if op == "set_power":
        return cmd.set_power(args[0], wait=bool(args[1]) if len(args) > 1 else False)
    if op == "set_bootdev":
        device, persist, uefi = args
        if device == "network":
            return _network_boot(cmd, persist, uefi)
        return cmd.set_bootdev(device, persist=persist, uefiboot=uefi)
    if op == "netboot":
        _network_boot(cmd, False, bool(args[0]))
        if cmd.get_power()["powerstate"] == "on":
            cmd.set_power("off", wait=True)
            cmd.set_power("on", wait=False)
            return "cycle"
        cmd.set_power("on", wait=False)
        return "on"
    raise ValueError(f"unknown op {op}")


# Get/Set System Boot Options (IPMI 2.0 section 28.12, netfn chassis 0x00, commands 0x08/0x09)
_BOOT_DEVICES = {0: "no override", 1: "network", 2: "disk", 3: "disk (safe mode)", 4: "diagnostic",
                 5: "cd/dvd", 6: "bios setup", 15: "floppy"}


class BootNotHeld(Exception):
    pass


def _network_boot(cmd, persist: bool, uefi: bool) -> dict:
    """Set the boot device to network so that it holds: first parameter 3 (boot flag valid bit
    clearing) = 0x08, "do not clear the valid bit if no Chassis Control command arrives within
    60 s" (as Ironic does before setting a device; without it the BMC drops the override after
    a minute), then the device, then read parameter 5 back: the device selector must say network."""
    cmd.raw_command(netfn=0, command=8, data=(3, 8))  # a BMC without parameter 3 answers an error: go on
    result = cmd.set_bootdev("network", persist=persist, uefiboot=uefi)
    got = cmd.raw_command(netfn=0, command=9, data=(5, 0, 0))
    if got.get("error"):
        raise BootNotHeld(f"reading the boot device back failed: {got['error']}")
    data = bytes(got.get("data") or b"")
    selector = (data[3] >> 2) & 0x0F if len(data) > 3 else None
    if selector != 1:
        shown = "nothing" if selector is None else _BOOT_DEVICES.get(selector, selector)
        raise BootNotHeld(f"boot device read back as {shown!s}, not network: "
                          "the BMC did not keep the one-time network boot")
    return result


def main() -> None:
    req = json.loads(sys.stdin.read())
    try:
        out = run(req)
    except Exception as exc:  # report, never a traceback with the request in it
        out = {"ok": False, "kind": "error", "message": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
