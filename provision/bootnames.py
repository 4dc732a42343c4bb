"""Per-MAC boot config file names, shared by HTTP and TFTP.

GRUB2 asks for `grub.cfg-01-aa-bb-cc-dd-ee-ff` (in its prefix directory), pxelinux for
`pxelinux.cfg/01-aa-bb-cc-dd-ee-ff` (ARP type 1 = Ethernet, hex, dashes).
"""

from __future__ import annotations

import re

from .domain.types import normalize_mac

_MAC = r"(?P<mac>[0-9a-fA-F]{2}(?:-[0-9a-fA-F]{2}){5})"
_PATTERNS = {
    "grub": re.compile(rf"^(?:[A-Za-z0-9_.-]+/)*grub\.cfg-01-{_MAC}"),
    "pxelinux": re.compile(rf"^(?:[A-Za-z0-9_.-]+/)*(?:pxelinux\.cfg/)?01-{_MAC}"),
}


def mac_from_name(filename: str, kind: str) -> str | None:
    """The normalised MAC in a per-MAC config file name of `kind`, or None."""
    m = _PATTERNS[kind].fullmatch(filename.lstrip("/"))
    if not m:
        return None
    try:
        return normalize_mac(m.group("mac"))
    except ValueError:
        return None


def classify(path: str) -> tuple[str, str] | None:
    """For a TFTP path: ('grub'|'pxelinux', mac) when it names a per-MAC config, else None."""
    p = path.lstrip("/")
    if "grub.cfg-01-" in p:
        kind = "grub"
    elif "pxelinux.cfg/01-" in p:
        kind = "pxelinux"
    else:
        return None
    mac = mac_from_name(p, kind)
    return (kind, mac) if mac else None
