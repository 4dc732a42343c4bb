"""Opening a file that is served: the TFTP root and `/boot/<name>` over HTTP ([paths] bootfiles), and
installation media (`media/...` over TFTP, `/media/...` over HTTP; [paths] media).

One policy for every protocol: a name is refused when it is empty, has an empty, `.` or `..`
part, a control character, a part longer than NAME_MAX or a whole longer than PATH_MAX, or names a
template (*.j2, *.md); a symlink is followed only while it stays inside its root (so an ISO mounted
or linked under the media root works); only a regular file is opened. Whatever the name, the answer
is an outcome, never an exception."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

REFUSED_SUFFIXES = (".j2", ".md")
NAME_MAX, PATH_MAX = 255, 4096


@dataclass(frozen=True)
class Opened:
    """An open, regular file under a served root; the caller closes `fd`."""
    fd: int
    size: int
    name: str  # the last part of the path asked for
    stat: os.stat_result


def acceptable(rel: str) -> bool:
    """Whether `rel` (a path relative to a root) may name a served file at all."""
    parts = rel.split("/")
    return (0 < len(rel.encode("utf-8", "surrogateescape")) <= PATH_MAX
            and all(p not in ("", ".", "..") and len(p.encode("utf-8", "surrogateescape")) <= NAME_MAX for p in parts)
            and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in rel)
            and not rel.endswith(REFUSED_SUFFIXES))


def open_under(root: Path, rel: str) -> tuple[str, Opened | None]:
    """("file", Opened) or (outcome, None): "refused" (a name the policy refuses, a link out of the
    root, not a regular file) or "not-found"."""
    if not acceptable(rel):
        return "refused", None
    try:
        base = Path(root).resolve()
        target = (base / rel).resolve()
        if not target.is_relative_to(base):
            return "refused", None
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except (OSError, ValueError, RuntimeError):  # missing, unreadable, a link loop
        return "not-found", None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return "refused", None
    return "file", Opened(fd, st.st_size, rel.rsplit("/", 1)[-1], st)


def open_media(root: Path, rel: str) -> tuple[str, Opened | None]:
    """open_under for [paths] media, whose top level holds only imported media by their names: a
    hidden entry there (an import still copying, `.NAME.partial-PID`) is never served."""
    if rel.startswith("."):
        return "refused", None
    return open_under(root, rel)


def etag(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_size:x}-{st.st_ino:x}"
