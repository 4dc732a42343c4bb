"""Disks from the collector: `lsblk -J` (EL8+) or `lsblk -P` (EL7: no JSON), /dev/disk/by-id,
and `pvs` (which volume group lives on which disk).

- Multipath: path disks (sdX) sharing one WWN under an `mpath` child are one disk, named by the
  link udev creates for the multipath device (`dm-uuid-mpath-<WWID>`), flagged `multipath`.
- The id is the by-id name udev really created for the device, ranked: the multipath name, the
  previous snapshot's name when it still exists (stable ids), wwn-, nvme-eui., nvme-nvme., scsi-3.
- `vgs`: every LVM volume group with a physical volume on the disk (kept disks holding an old
  OS's VG are flagged before a wipe: render/checks.py)."""

from __future__ import annotations

import re
import shlex
from typing import Any

from ..domain import Facts

RANK = ("dm-uuid-mpath-", "wwn-", "nvme-eui.", "nvme-nvme.", "scsi-3", "nvme-", "ata-", "scsi-")


def _rank(name: str) -> int:
    return next((i for i, p in enumerate(RANK) if name.startswith(p)), len(RANK))


def lsblk_pairs(text: str) -> dict:
    """`lsblk -P` (children follow their parent, a `disk` row starts a tree) -> the -J shape."""
    disks: list[dict] = []
    for line in text.splitlines():
        try:
            row = dict(w.split("=", 1) for w in shlex.split(line))
        except ValueError:
            continue
        if "NAME" not in row:
            continue
        dev: dict[str, Any] = {k.lower(): (v if v != "" else None) for k, v in row.items()}
        size = dev.get("size")
        if size:
            dev["size"] = int(size) if size.isdigit() else size
        if dev.get("type") in ("disk", "rom", "loop") or not disks:
            disks.append(dev)
        else:
            disks[-1].setdefault("children", []).append(dev)  # flat: depth does not matter here
    return {"blockdevices": disks}


def _walk(dev: dict):
    yield dev
    for child in dev.get("children") or []:
        yield from _walk(child)


def by_id_links(text: str) -> dict[str, list[str]]:
    """`ls -l /dev/disk/by-id/` -> {kernel name: [link names]} (partition links left out)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.search(r"\s(\S+) -> \.\./\.\./(\S+)$", line)
        if m and "-part" not in m.group(1):
            out.setdefault(m.group(2), []).append(m.group(1))
    return out


def pv_groups(text: str) -> dict[str, str]:
    """`pvs --noheadings --separator '|' -o pv_name,vg_name` -> {device basename: VG}."""
    out = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 2 and parts[0] and parts[1]:
            out[parts[0].rsplit("/", 1)[-1]] = parts[1]
    return out


def disks(tree: dict, byid_text: str, pvs_text: str, previous: Facts | None) -> list[dict]:
    byid = by_id_links(byid_text)
    vgs = pv_groups(pvs_text)
    prev_ids = {d.id for d in previous.disks} if previous else set()
    prev_install = previous.install_disk if previous else None
    merged: dict[str, dict] = {}  # one entry per physical disk (multipath paths merged by WWN)
    for dev in tree.get("blockdevices", []):
        if dev.get("type") != "disk" or dev["name"].startswith(("zram", "loop", "sr", "ram")):
            continue
        nodes = list(_walk(dev))
        mpath = next((n for n in nodes if n.get("type") == "mpath"), None)
        wwn = (dev.get("wwn") or "").lower() or None
        key = wwn if (mpath and wwn) else dev["name"]
        entry = merged.setdefault(key, {"devs": [], "names": set(), "mounts": set(), "vgs": set(), "mpath": None})
        entry["devs"].append(dev)
        entry["mpath"] = entry["mpath"] or mpath
        for n in nodes:
            kname = n.get("kname") or n["name"]
            entry["names"].update(byid.get(kname, []) if n is dev or n is mpath else [])
            if n.get("mountpoint"):
                entry["mounts"].add(n["mountpoint"])
            for name in {n["name"], kname}:
                if name in vgs:
                    entry["vgs"].add(vgs[name])
    out = []
    for entry in merged.values():
        dev = entry["devs"][0]
        wwn = (dev.get("wwn") or "").lower() or None
        serial = re.sub(r"[^A-Za-z0-9_.-]", "", (dev.get("serial") or "").strip()) or None
        names = sorted(entry["names"], key=lambda n: (_rank(n), n))
        if entry["mpath"]:
            names = [n for n in names if n.startswith("dm-uuid-mpath-")] or names
        else:
            kept = [n for n in names if n in prev_ids]
            names = kept + [n for n in names if n not in kept]
        disk = {"id": names[0] if names else None, "wwn": wwn, "serial": serial,
                "size_gb": round(int(dev.get("size") or 0) / 1e9, 1),
                "model": (dev.get("model") or "").strip() or None, "install": False,
                "multipath": entry["mpath"] is not None, "vgs": sorted(entry["vgs"]), "_mounts": entry["mounts"]}
        if prev_install and ((wwn and wwn == prev_install.wwn) or (serial and serial == prev_install.serial)
                             or disk["id"] == prev_install.id):
            disk["install"] = True
        out.append(disk)
    if not any(d["install"] for d in out):
        root = [d for d in out if "/" in d["_mounts"]]
        if len(root) == 1:
            root[0]["install"] = True
    for d in out:
        d.pop("_mounts")
        for k in [k for k, v in d.items() if v is None or v == [] or v is False and k == "multipath"]:
            d.pop(k)
    return out
