"""What a TFTP path resolves to: per-MAC GRUB and pxelinux configs from the boot-config cache
shared with HTTP (render/cache.py); static loaders from [paths] bootfiles and kernels from
[paths] media under `media/`. `..`, symlinks leaving a root, templates (*.j2) and non-regular
files are refused."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..bootnames import classify
from .transfer import Source

if TYPE_CHECKING:  # the pump processes import the engine only, not the store behind the cache
    from ..metrics import Metrics
    from ..render.cache import BootCache

log = logging.getLogger("provision.tftp")
REFUSED_SUFFIXES = (".j2", ".md")


class FileResolver:
    """Maps a TFTP path to a Source, or None (file not found / refused)."""

    def __init__(self, bootfiles: Path, media: Path, cache: BootCache | None,
                 metrics: Metrics | None = None) -> None:
        self.roots = {"": Path(bootfiles).resolve(), "media/": Path(media).resolve()}
        self.cache, self.metrics = cache, metrics

    def __call__(self, path: str, raddress=None, rport=None) -> Source | None:
        outcome, source = self.open(path)
        if self.metrics:
            self.metrics.tftp_requests.labels(outcome).inc()
        if source is None:
            log.info("tftp %s from %s: %s", path, raddress, outcome)
        elif source.data is not None:  # a per-MAC config: its first line says install or local boot
            log.info("tftp %s to %s: %s: %s", path, raddress, outcome, source.data.split(b"\n", 1)[0].decode(errors="replace"))
        else:
            log.info("tftp %s to %s: %s (%d bytes)", path, raddress, outcome, source.size)
        return source

    def open(self, path: str) -> tuple[str, Source | None]:
        per_mac = classify(path)
        if per_mac is not None:
            try:
                data = self.cache.boot_config(*per_mac) if self.cache else None
            except Exception as exc:  # a node that cannot be rendered: that node gets nothing, the loop goes on
                log.warning("tftp %s: cannot render: %s", path, exc)
                return "render-error", None
            if data is None:
                return "unknown-mac", None
            return "config", Source(data=data)
        rel = path.lstrip("/")
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..") for p in parts) or rel.endswith(REFUSED_SUFFIXES):
            return "refused", None
        prefix = "media/" if rel.startswith("media/") else ""
        root = self.roots[prefix]
        target = (root / rel[len(prefix):]).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return ("refused" if target.exists() else "not-found"), None
        try:
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return "not-found", None
        return "file", Source(fd=fd, size=os.fstat(fd).st_size)
