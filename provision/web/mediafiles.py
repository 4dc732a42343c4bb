"""/media/... for Flask (ops.py) and the HTTP front (front.py) alike: which file a path names under
[paths] media (no `..`; a symlink only while it stays inside the root, as over TFTP), and the
headers that describe it, so a validator one of them sent is understood by the other."""

from __future__ import annotations

import mimetypes
import os
from email.utils import formatdate
from pathlib import Path

_ENCODED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def resolve(root: Path, rel: str) -> Path | None:
    root = Path(root).resolve()
    target = (root / rel).resolve()
    return target if target.is_relative_to(root) and target.is_file() else None


def etag(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_size:x}-{st.st_ino:x}"


def content_type(name: str) -> str:
    """By the name, never with a Content-Encoding: a repository's primary.xml.gz is a gzip file to
    the installer, not XML the HTTP client should unpack."""
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:
        return _ENCODED.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


def headers(name: str, st: os.stat_result, first: int, last: int) -> list[tuple[str, str]]:
    """What the front sends with bytes first..last of the file (Flask sends the same fields)."""
    out = [("Content-Length", str(last - first + 1)), ("Content-Type", content_type(name)),
           ("ETag", f'"{etag(st)}"'), ("Last-Modified", formatdate(int(st.st_mtime), usegmt=True)),
           ("Accept-Ranges", "bytes"), ("Cache-Control", "no-cache")]
    if (first, last) != (0, st.st_size - 1):
        out.append(("Content-Range", f"bytes {first}-{last}/{st.st_size}"))
    return out
