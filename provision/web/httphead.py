"""The HTTP front's reading of a request head (web/front.py): only what it can answer itself, a
plain GET without a body, is parsed; anything else is None and goes to waitress, which reads and
answers it (errors included)."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote, unquote_to_bytes

from ..bootnames import mac_from_name
from ..domain.types import normalize_mac
from .kickstart import MAC_HEADER

_PREFIXES = (("/boot/grub/", "grub"), ("/boot/pxelinux.cfg/", "pxelinux"))
_BODY_HEADERS = (b"transfer-encoding", b"expect", b"upgrade")
_MAC_HEADER = MAC_HEADER.encode()


def boot_target(path: str, query: str) -> tuple[str | None, str]:
    """(mac, kind) of a per-MAC boot-config URL, as the Flask routes in boot.py read it; mac is None
    when the path is not one, or names no valid MAC."""
    for prefix, kind in _PREFIXES:
        if path.startswith(prefix):
            return mac_from_name(path[len(prefix):], kind), kind
    if path == "/boot/ipxe" and query.startswith("mac=") and "&" not in query:
        try:
            return normalize_mac(unquote(query[4:])), "ipxe"
        except ValueError:
            return None, "ipxe"
    return None, ""


class Head(NamedTuple):
    path: str  # percent-decoded, as waitress gives it to Flask (PEP 3333: latin-1)
    query: str
    keep: bool  # keep the connection open after the answer
    http10: bool
    macs: list[str]  # X-RHN-Provisioning-MAC-* values
    range: str | None = None  # the Range header's value
    conditional: bool = False  # any If-* header: the front leaves those to Flask


def parse_head(head: bytes) -> Head | None:
    """A plain `GET` without a body, or None for anything else."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None
    http10 = parts[2] == b"HTTP/1.0"
    keep, macs, rng, conditional = not http10, [], None, False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[:1] in (b" ", b"\t") or name != name.strip():
            return None
        name, raw, value = name.lower(), value.strip(), value.strip().lower()
        if name.startswith(_MAC_HEADER):
            macs.append(raw.decode("latin-1"))
        elif name in _BODY_HEADERS or (name == b"content-length" and value != b"0"):
            return None
        elif name == b"range":
            if rng is not None:
                return None
            rng = raw.decode("latin-1")
        elif name.startswith(b"if-"):
            conditional = True
        elif name == b"connection":
            tokens = {t.strip() for t in value.split(b",")}
            keep = False if b"close" in tokens else (True if b"keep-alive" in tokens else keep)
    target = parts[1]
    if not target.startswith(b"/") or b"#" in target:
        return None
    raw_path, _, query = target.partition(b"?")
    try:
        return Head(unquote_to_bytes(raw_path).decode("latin-1"), query.decode("ascii"), keep, http10, macs,
                    rng, conditional)
    except UnicodeDecodeError:
        return None


def byte_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single satisfiable `bytes=` range (RFC 9110 14.1.2), the whole file when
    there is no Range header; None for anything else (several ranges, unsatisfiable, malformed),
    which Flask answers."""
    if value is None:
        return (0, size - 1) if size > 0 else None
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or not all(p.isdigit() or not p for p in (first, last)):
        return None
    if not first:  # the last N bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else None
    a = int(first)
    b = min(int(last), size - 1) if last else size - 1
    return (a, b) if a <= b and a < size else None


_TOKEN_PATH = re.compile(r"^(/ks/|/vmedia/|/api/v1/callback/|/api/v1/collect/)[^/]*")


def loggable_path(path: str) -> str:
    """The path as the access log shows it: build and collection tokens masked."""
    return _TOKEN_PATH.sub(r"\1********", path)
