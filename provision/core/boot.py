"""What a boot client gets for a name, over TFTP and over HTTP alike: a per-MAC GRUB, pxelinux or
iPXE config from the boot-config cache (render/cache.py), or a file under [paths] bootfiles, or under
[paths] media as `media/...` (files.py decides which files may be opened)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..bootnames import classify
from .files import Opened, open_media, open_under

if TYPE_CHECKING:  # the TFTP pump processes import this module, not the store behind the cache
    from ..render.cache import BootCache

log = logging.getLogger("provision.boot")


@dataclass(frozen=True)
class Served:
    """outcome: "config" (data), "file" (file), or why nothing is served: "unknown-mac",
    "render-error", "refused", "not-found"."""
    outcome: str
    data: bytes | None = None
    file: Opened | None = None


class BootFiles:
    def __init__(self, bootfiles: Path, media: Path, cache: BootCache | None) -> None:
        self.bootfiles, self.media, self.cache = Path(bootfiles), Path(media), cache

    def config(self, kind: str, mac: str | None) -> Served:
        """The `kind` config of the node that has `mac`, as it is served now."""
        if mac is None or self.cache is None:
            return Served("unknown-mac")
        try:
            data = self.cache.boot_config(kind, mac)
        except Exception as exc:  # a node that cannot be rendered: that node gets nothing, the rest go on
            log.warning("%s config for %s: cannot render: %s", kind, mac, exc)
            return Served("render-error")
        return Served("config", data=data) if data is not None else Served("unknown-mac")

    def lookup(self, name: str) -> Served:
        """A name of the TFTP namespace (also `/boot/<name>` over HTTP, for UEFI HTTP boot)."""
        per_mac = classify(name)
        if per_mac is not None:
            return self.config(*per_mac)
        rel = name.lstrip("/")
        if rel.startswith("media/"):
            outcome, opened = open_media(self.media, rel[len("media/"):])
        else:
            outcome, opened = open_under(self.bootfiles, rel)
        return Served(outcome, file=opened)
