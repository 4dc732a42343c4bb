"""Per-build boot ISOs for virtual-media boot (`boot = "vmedia"`: no DHCP, no PXE).

pycdlib writes an ISO 9660 image (Rock Ridge and Joliet names, volume label PROVISION) holding:
- /images/pxeboot/vmlinuz and initrd.img: the node's media kernel and initrd (streamed from disk);
- BIOS: /isolinux/isolinux.bin (El Torito, no emulation, boot info table), ldlinux.c32 and the
  node's rendered isolinux.cfg;
- UEFI: /images/efiboot.img as the El Torito EFI entry (a FAT image with EFI/BOOT/BOOTX64.EFI):
  the media's own images/efiboot.img (`media import` copies the installer ISO's, whose shim and
  GRUB match its kernel), else the one in [paths] bootfiles; and the node's rendered
  /EFI/BOOT/grub.cfg, which that GRUB reads from the CD (its prefix is /EFI/BOOT on the boot
  device, as on the installer ISO).
Both boot configs carry the node's whole installer command line: static network (ip=, bond=,
vlan=, ifname=, nameserver=) and inst.ks= with the build's token. The BIOS loaders come from
[paths] bootfiles; the ones the node's firmware needs must be there. The image is written once per
build under state_dir/vmedia (0600: it holds the build token), by one writer at a time per build
(the BMC's first fetches come together), and removed with the build; writing a node's new build's
image removes its older builds' images and what a killed writer left."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading
from pathlib import Path

import pycdlib

from .config import Config
from .errors import InputError
from .render import Renderer
from .render.context import media_name
from .store import Build, Store

LABEL = "PROVISION"
BIOS_FILES = ("isolinux.bin", "ldlinux.c32")


_LOCKS: dict[int, threading.Lock] = {}  # build id -> its writer's lock (this process's requests)
_LOCKS_LOCK = threading.Lock()


def iso_path(cfg: Config, build: Build) -> Path:
    return cfg.paths.state_dir / "vmedia" / f"{build.node}-build-{build.id}.iso"


def ensure_iso(cfg: Config, store: Store, renderer: Renderer, build: Build) -> Path:
    """The build's ISO, written now if it is not there yet (whole or not at all)."""
    path = iso_path(cfg, build)
    if path.is_file():
        return path
    with _LOCKS_LOCK:
        lock = _LOCKS.setdefault(build.id, threading.Lock())
    with lock:  # the others wait for the one writing, then find its image
        if path.is_file():
            return path
        return _build(cfg, store, renderer, build, path)


def _build(cfg: Config, store: Store, renderer: Renderer, build: Build, path: Path) -> Path:
    node = store.get(build.node).node
    problems = missing_inputs(cfg, node)
    if problems:
        raise InputError(f"node {node.name}: " + "; ".join(problems))
    boot = Path(cfg.paths.bootfiles)
    images = Path(cfg.paths.media) / media_name(node, cfg) / "images"
    efiboot = _efiboot(cfg, node)
    missing = [f for f in BIOS_FILES if not (boot / f).is_file()]
    pxe = images / "pxeboot"
    configs = {kind: renderer.render_build(build, kind).text.encode() for kind in ("isolinux", "grub-iso")}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _remove_stale(path.parent, build)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.")  # 0600, one per writer
    os.close(fd)
    tmp = Path(name)
    try:
        _write(tmp, pxe, boot, configs, bios=not missing, efiboot=efiboot)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _remove_stale(directory: Path, build: Build) -> None:
    """The node's older builds' images (superseded: their tokens are dead) and the temporary
    files of writers whose process is gone (killed mid-write; they hold a token)."""
    for old in directory.glob(f"{build.node}-build-*.iso"):
        if old.name != f"{build.node}-build-{build.id}.iso":
            old.unlink(missing_ok=True)
    for tmp in directory.glob(".*.iso.*"):
        pid = tmp.name.split(".iso.", 1)[1].split(".", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            tmp.unlink(missing_ok=True)


def _efiboot(cfg: Config, node) -> Path | None:
    images = Path(cfg.paths.media) / media_name(node, cfg) / "images"
    return next((p for p in (images / "efiboot.img", Path(cfg.paths.bootfiles) / "efiboot.img") if p.is_file()), None)


def missing_inputs(cfg: Config, node) -> list[str]:
    """What the node's ISO cannot be built without (empty when it can): read before anything is
    deleted (preflight) and again when the ISO is built."""
    uefi = node.facts is not None and node.facts.firmware == "uefi"
    boot, name = Path(cfg.paths.bootfiles), media_name(node, cfg)
    problems = []
    if uefi and _efiboot(cfg, node) is None:
        problems.append(f"a UEFI virtual-media ISO needs efiboot.img in media {name!r} (images/efiboot.img) "
                        f"or in [paths] bootfiles ({boot})")
    missing = [f for f in BIOS_FILES if not (boot / f).is_file()]
    if not uefi and missing:
        problems.append(f"a BIOS virtual-media ISO needs {', '.join(missing)} in [paths] bootfiles ({boot})")
    pxe = Path(cfg.paths.media) / name / "images" / "pxeboot"
    problems += [f"media {name!r} has no images/pxeboot/{f} (provision media import)"
                 for f in ("vmlinuz", "initrd.img") if not (pxe / f).is_file()]
    return problems


def remove_iso(cfg: Config, build: Build) -> None:
    iso_path(cfg, build).unlink(missing_ok=True)


def _write(out: Path, pxe: Path, boot: Path, configs: dict[str, bytes], *, bios: bool, efiboot: Path | None) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABEL)
    with contextlib.ExitStack() as files:
        def add(iso_name: str, path: str, source: Path | None = None, data: bytes | None = None) -> None:
            fp = files.enter_context(open(source, "rb")) if source else io.BytesIO(data or b"")
            length = source.stat().st_size if source else len(data or b"")
            iso.add_fp(fp, length, iso_name, rr_name=path.rsplit("/", 1)[-1], joliet_path=path)

        for d in ("/images", "/images/pxeboot", "/isolinux", "/EFI", "/EFI/BOOT"):
            iso.add_directory(d.upper(), rr_name=d.rsplit("/", 1)[-1], joliet_path=d)
        add("/IMAGES/PXEBOOT/VMLINUZ.;1", "/images/pxeboot/vmlinuz", pxe / "vmlinuz")
        add("/IMAGES/PXEBOOT/INITRD.IMG;1", "/images/pxeboot/initrd.img", pxe / "initrd.img")
        add("/ISOLINUX/ISOLINUX.CFG;1", "/isolinux/isolinux.cfg", data=configs["isolinux"])
        add("/EFI/BOOT/GRUB.CFG;1", "/EFI/BOOT/grub.cfg", data=configs["grub-iso"])
        if bios:
            add("/ISOLINUX/ISOLINUX.BIN;1", "/isolinux/isolinux.bin", boot / "isolinux.bin")
            add("/ISOLINUX/LDLINUX.C32;1", "/isolinux/ldlinux.c32", boot / "ldlinux.c32")
            iso.add_eltorito("/ISOLINUX/ISOLINUX.BIN;1", bootcatfile="/BOOT.CAT;1", boot_load_size=4,
                             boot_info_table=True)
        if efiboot is not None:
            add("/IMAGES/EFIBOOT.IMG;1", "/images/efiboot.img", efiboot)
            iso.add_eltorito("/IMAGES/EFIBOOT.IMG;1", bootcatfile="/BOOT.CAT;1", efi=True)
        iso.write(str(out))
    iso.close()
