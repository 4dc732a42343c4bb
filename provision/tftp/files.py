"""A TFTP read request's name, answered as core/boot.py decides (the same answer as over HTTP):
a per-MAC config from the boot-config cache, or a file under [paths] bootfiles or [paths] media
(`media/...`). Here it becomes a Source, is counted and logged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.boot import BootFiles
from .transfer import Source

if TYPE_CHECKING:  # the pump processes import the engine only, not the store behind the cache
    from ..metrics import Metrics
    from ..render.cache import BootCache

log = logging.getLogger("provision.tftp")


def _shown(text: str) -> str:
    """A client's name as the log shows it: quoted with escapes when it has anything but printable
    characters, so a name cannot forge a log line."""
    return text if text.isprintable() else ascii(text)


class FileResolver:
    """Maps a TFTP path to a Source, or None (file not found / refused)."""

    def __init__(self, bootfiles: Path, media: Path, cache: BootCache | None,
                 metrics: Metrics | None = None) -> None:
        self.files = BootFiles(bootfiles, media, cache)
        self.metrics = metrics

    def __call__(self, path: str, raddress=None, rport=None) -> Source | None:
        outcome, source = self.open(path)
        if self.metrics:
            self.metrics.tftp_requests.labels(outcome).inc()
        shown = _shown(path)
        if source is None:
            log.debug("tftp %s from %s: %s", shown, raddress, outcome)  # a miss storm must not flood the log
        elif source.data is not None:  # a per-MAC config: its first line says install or local boot
            log.info("tftp %s to %s: %s: %s", shown, raddress, outcome,
                     _shown(source.data.split(b"\n", 1)[0].decode(errors="replace")))
        else:
            log.info("tftp %s to %s: %s (%d bytes)", shown, raddress, outcome, source.size)
        return source

    def open(self, path: str) -> tuple[str, Source | None]:
        served = self.files.lookup(path)
        if served.data is not None:
            return served.outcome, Source(data=served.data)
        if served.file is not None:
            return served.outcome, Source(fd=served.file.fd, size=served.file.size)
        return served.outcome, None
