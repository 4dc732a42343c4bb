"""Virtual-media boot ISOs: built per build on a real `provision serve` at /vmedia/<token>/boot.iso
(whole, HEAD, a Range as BMCs read it), read back with pycdlib: the media's kernel and initrd, the
rendered isolinux.cfg and /EFI/BOOT/grub.cfg with the node's static network and inst.ks=, and the
El Torito entries (BIOS isolinux, UEFI efiboot.img). Refused once `installed` is in, for unknown
tokens, and (naming the file) when the firmware's loader is missing. The loaders here are stand-in
bytes: the VM test of the Redfish issue is what boots a real one."""

from __future__ import annotations

import copy
import io
import os

import pycdlib
import pytest
import requests
import yaml

from provision import tokens
from provision.domain import parse_nodes
from provision.web.accesslog import loggable_path

from .conftest import EXAMPLE, start_server

KERNEL, INITRD = os.urandom(300_000), os.urandom(1_200_000)


@pytest.fixture
def srv(tmp_path):
    boot, pxe = tmp_path / "bootfiles", tmp_path / "media" / "rhvh" / "images" / "pxeboot"
    pxe.mkdir(parents=True)
    boot.mkdir()
    (pxe / "vmlinuz").write_bytes(KERNEL)
    (pxe / "initrd.img").write_bytes(INITRD)
    (boot / "efiboot.img").write_bytes(b"\xeb\x3c\x90" + bytes(2048 * 16 - 3))  # stand-in FAT image
    gen = start_server(tmp_path)
    server = next(gen)
    data = yaml.safe_load(EXAMPLE.read_text())
    bios = copy.deepcopy(data["nodes"][1])
    bios["facts"]["firmware"] = "bios"
    data["nodes"][1] = bios
    server.svc.store.import_nodes(parse_nodes(data))
    yield server, boot
    gen.close()


def _iso(raw: bytes) -> pycdlib.PyCdlib:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(raw))
    return iso


def _read(iso: pycdlib.PyCdlib, rr_path: str) -> bytes:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, rr_path=rr_path)
    return out.getvalue()


def test_a_uefi_nodes_iso_carries_its_kernel_initrd_and_boot_configs(srv):
    server, _ = srv
    build, token = server.svc.store.arm("rhvnode3", server.svc.key, 3600)
    url = f"{server.http}/vmedia/{token}/boot.iso"
    whole = requests.get(url, timeout=30)
    assert whole.status_code == 200 and whole.headers["Content-Type"] == "application/x-iso9660-image"
    head = requests.head(url, timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(whole.content)
    part = requests.get(url, headers={"Range": "bytes=32768-34815"}, timeout=30)  # the primary volume descriptor
    assert part.status_code == 206 and part.content == whole.content[32768:34816] and part.content[1:6] == b"CD001"

    iso = _iso(whole.content)
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "PROVISION"
        assert _read(iso, "/images/pxeboot/vmlinuz") == KERNEL and _read(iso, "/images/pxeboot/initrd.img") == INITRD
        grub = _read(iso, "/EFI/BOOT/grub.cfg").decode()
        isolinux = _read(iso, "/isolinux/isolinux.cfg").decode()
        catalog = iso.eltorito_boot_catalog
        efi_extent = iso.get_record(rr_path="/images/efiboot.img").extent_location()
    finally:
        iso.close()
    # UEFI only (no isolinux.bin in bootfiles): the one El Torito entry is the EFI system image
    assert catalog.initial_entry.load_rba == efi_extent and not catalog.sections
    for text in (grub, isolinux):
        assert f"inst.ks={server.http}/ks/{token}" in text
        assert "ip=192.0.2.13::192.0.2.1:255.255.255.0:rhvnode3.lab.example.com:eno1:none" in text
        assert "ifname=eno1:0c:c4:7a:3b:03:01" in text
    assert "  linux /images/pxeboot/vmlinuz inst.ks=" in grub and "search --no-floppy --set=root --label PROVISION" in grub
    assert "  APPEND initrd=/images/pxeboot/initrd.img inst.ks=" in isolinux
    path = server.svc.cfg.paths.state_dir / "vmedia" / f"{build.node}-build-{build.id}.iso"
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds the build token
    assert loggable_path(f"/vmedia/{token}/boot.iso") == "/vmedia/********/boot.iso"

    server.svc.store.set_boot_local(build.id)  # `installed` accepted: the ISO is no longer served
    assert requests.get(url, timeout=30).status_code == 403
    assert requests.get(f"{server.http}/vmedia/{tokens.derive('x' * 32, 'n' * 16)}/boot.iso", timeout=30).status_code == 404


def test_the_medias_own_efiboot_img_is_preferred_to_the_bootfiles_one(srv):
    """The installer ISO's images/efiboot.img (copied by `media import`) has the shim and GRUB that
    match the media's kernel: a UEFI ISO takes it; without either, the error names both places."""
    server, boot = srv
    media_efi = server.svc.cfg.paths.media / "rhvh" / "images" / "efiboot.img"
    media_efi.write_bytes(b"\xeb\x3c\x90MEDIA" + bytes(2048 * 16 - 8))
    _, token = server.svc.store.arm("rhvnode3", server.svc.key, 3600)
    iso = _iso(requests.get(f"{server.http}/vmedia/{token}/boot.iso", timeout=30).content)
    try:
        assert _read(iso, "/images/efiboot.img") == media_efi.read_bytes()
    finally:
        iso.close()
    media_efi.unlink()
    (boot / "efiboot.img").unlink()
    _, token = server.svc.store.arm("rhvnode5", server.svc.key, 3600)
    missing = requests.get(f"{server.http}/vmedia/{token}/boot.iso", timeout=30)
    assert missing.status_code == 400
    assert ("a UEFI virtual-media ISO needs efiboot.img in media 'rhvh' (images/efiboot.img) or in [paths] bootfiles"
            in missing.json()["error"])


def test_a_bios_nodes_iso_needs_isolinux_and_boots_it(srv):
    server, boot = srv
    _, token = server.svc.store.arm("rhvnode4", server.svc.key, 3600)
    url = f"{server.http}/vmedia/{token}/boot.iso"
    missing = requests.get(url, timeout=30)
    assert missing.status_code == 400
    assert "a BIOS virtual-media ISO needs isolinux.bin, ldlinux.c32 in [paths] bootfiles" in missing.json()["error"]
    (boot / "isolinux.bin").write_bytes(b"\xfa\xeb" + bytes(32 * 1024 - 2))  # stand-in loader
    (boot / "ldlinux.c32").write_bytes(b"ldlinux")
    raw = requests.get(url, timeout=30).content
    iso = _iso(raw)
    try:
        catalog = iso.eltorito_boot_catalog
        assert catalog.validation_entry.platform_id == 0  # x86 BIOS first
        assert catalog.initial_entry.sector_count == 4  # boot_load_size 4, as isolinux wants
        assert [s.platform_id for s in catalog.sections] == [0xEF]  # and UEFI beside it
        loader = _read(iso, "/isolinux/isolinux.bin")
        assert loader[:2] == b"\xfa\xeb" and loader[8:12] != bytes(4)  # the boot info table was written in
        assert _read(iso, "/isolinux/ldlinux.c32") == b"ldlinux"
    finally:
        iso.close()


def test_first_fetches_at_once_all_get_the_image_and_nothing_is_left_behind(srv):
    """Four first fetches of a build's ISO at once (a BMC opens several ranges): three got 500 on a
    shared temporary name. A killed writer's temporary file (it holds a token) and a superseded
    build's image are removed when the node's next image is written."""
    import threading

    server, _ = srv
    vdir = server.svc.cfg.paths.state_dir / "vmedia"
    old, old_token = server.svc.store.arm("rhvnode3", server.svc.key, 3600)
    assert requests.get(f"{server.http}/vmedia/{old_token}/boot.iso", timeout=30).status_code == 200
    killed = vdir / f".rhvnode3-build-{old.id}.iso.999999999.abc123"  # no such process
    killed.write_bytes(b"half an image")
    build, token = server.svc.store.arm("rhvnode3", server.svc.key, 3600)  # supersedes `old`
    url = f"{server.http}/vmedia/{token}/boot.iso"
    got: list = [None] * 4
    start = threading.Barrier(4)

    def fetch(i: int) -> None:
        start.wait()
        r = requests.get(url, timeout=60)
        got[i] = (r.status_code, r.content)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [g[0] for g in got] == [200] * 4 and len({g[1] for g in got}) == 1
    assert sorted(p.name for p in vdir.iterdir()) == [f"rhvnode3-build-{build.id}.iso"]
