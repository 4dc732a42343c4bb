"""`provision media import|list|remove` with small ISOs in both layouts (oVirt Node's live image,
EL's repository tree), built with pycdlib; what is imported is served over real HTTP byte for byte,
with Range, HEAD and ETag."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest
import requests
import yaml

from provision import config as config_mod
from provision import services
from provision.domain import parse_nodes

from .conftest import EXAMPLE, run_cli, start_server, write_config
from .isos import make_iso

LIVE = "rhvh/redhat-virtualization-host-4.5.squashfs.img"  # not [defaults] rhvh_liveimg: read from the ISO


def _ovirt_files() -> dict[str, bytes]:
    return {"images/pxeboot/vmlinuz": os.urandom(70_000), "images/pxeboot/initrd.img": os.urandom(150_000),
            "images/install.img": os.urandom(30_000), "images/efiboot.img": os.urandom(20_000),
            "images/product.img": os.urandom(9_000),  # oVirt Node's installer classes (partitioning rules)
            ".treeinfo": b"[general]\nname = oVirt Node\n",
            ".discinfo": b"1\n", "interactive-defaults.ks": f"text\nliveimg --url=file:///run/install/repo/{LIVE}\n".encode(),
            LIVE: os.urandom(400_000), "Packages/ovirt-node-ng-image-update-4.5.rpm": os.urandom(1000)}


def _el_files() -> dict[str, bytes]:
    return {"images/pxeboot/vmlinuz": os.urandom(60_000), "images/pxeboot/initrd.img": os.urandom(90_000),
            "images/install.img": os.urandom(20_000), ".treeinfo": b"[general]\nname = EL 9\n",
            "BaseOS/repodata/repomd.xml": b"<repomd/>", "BaseOS/Packages/b/bash-5.1.rpm": os.urandom(5000),
            "AppStream/repodata/repomd.xml": b"<repomd/>", "EFI/BOOT/grubx64.efi": os.urandom(3000)}


@pytest.fixture
def cfg(tmp_path):
    cfg = write_config(tmp_path, extra='[defaults]\nrhvh_media = "rhvh-4.5"\nel_media = "el9"\n')
    svc = services.build(config_mod.load(cfg), bootcheck=False)
    svc.store.import_nodes(parse_nodes(yaml.safe_load(EXAMPLE.read_text())))
    svc.close()
    return cfg


def test_an_ovirt_node_iso_gives_its_live_image_and_the_kickstart_installs_it(cfg, tmp_path):
    files = _ovirt_files()
    iso = make_iso(tmp_path / "ovirt.iso", files, volume="OVIRT_NODE_4_5")
    res = run_cli("media", "import", str(iso), "--name", "rhvh-4.5", config=cfg)
    assert res.returncode == 0, res.stderr
    assert f"imported rhvh-4.5 (ovirt-node, live image {LIVE})" in res.stdout
    dest = tmp_path / "media" / "rhvh-4.5"
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == sorted(["SHA256SUMS", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img", "images/install.img",
                             "images/product.img", "images/efiboot.img", ".treeinfo", ".discinfo",
                             "interactive-defaults.ks", LIVE])  # not Packages/, and efiboot.img for vmedia boot ISOs
    for rel in copied:
        assert rel == "SHA256SUMS" or (dest / rel).read_bytes() == files[rel], rel
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dest, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 9, check.stdout
    listed = run_cli("media", "list", config=cfg).stdout
    assert "rhvh-4.5" in listed and "ovirt-node" in listed and "rhvh" in listed and "ovirt.iso (OVIRT_NODE_4_5)" in listed
    ks = run_cli("render", "rhvnode3", "--kind", "kickstart", config=cfg).stdout
    assert f"liveimg --url=http://127.0.0.1:8080/media/rhvh-4.5/{LIVE}" in ks


def test_an_el_iso_gives_its_whole_tree(cfg, tmp_path):
    files = _el_files()
    iso = make_iso(tmp_path / "el.iso", files)
    res = run_cli("media", "import", str(iso), "--name", "el9", config=cfg)
    assert res.returncode == 0, res.stderr
    dest = tmp_path / "media" / "el9"
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data, rel
    sums = dict(reversed(line.split("  ", 1)) for line in (dest / "SHA256SUMS").read_text().splitlines())
    assert sums == {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    assert "el9" in run_cli("media", "list", config=cfg).stdout


def test_imported_media_are_served_byte_for_byte_with_range_head_and_etag(tmp_path):
    gen = start_server(tmp_path)
    srv = next(gen)
    try:
        files = _ovirt_files()
        iso = make_iso(tmp_path / "ovirt.iso", files)
        assert run_cli("media", "import", str(iso), "--name", "rhvh", config=srv.config).returncode == 0
        url = f"{srv.http}/media/rhvh"
        for rel in ("images/pxeboot/vmlinuz", LIVE):
            got = requests.get(f"{url}/{rel}", timeout=30)
            assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(files[rel]).digest()
        data = files[LIVE]
        part = requests.get(f"{url}/{LIVE}", headers={"Range": "bytes=1000-1999"}, timeout=30)
        assert part.status_code == 206 and part.content == data[1000:2000]
        assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
        tail = requests.get(f"{url}/{LIVE}", headers={"Range": "bytes=-10"}, timeout=30)
        assert tail.status_code == 206 and tail.content == data[-10:]
        bad = requests.get(f"{url}/{LIVE}", headers={"Range": f"bytes={len(data)}-"}, timeout=30)
        assert bad.status_code == 416
        head = requests.head(f"{url}/{LIVE}", timeout=30)
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data) and not head.content
        etag = head.headers["ETag"]
        assert requests.get(f"{url}/{LIVE}", headers={"If-None-Match": etag}, timeout=30).status_code == 304
    finally:
        gen.close()


@pytest.mark.parametrize("case,message", [
    ("not-an-iso", "cannot be read as an ISO 9660 image"),
    ("no-kernel", "no images/pxeboot/vmlinuz: not an installer ISO"),
    ("liveimg-missing", f"its kickstart's liveimg file:///run/install/repo/{LIVE} is not on the ISO"),
    ("bad-name", "--name: 'a/b' must be 1-64 of"),
    ("taken", "--name: media 'rhvh-4.5' already exists"),
])
def test_a_bad_import_is_an_input_error_and_leaves_nothing(cfg, tmp_path, case, message):
    files = _ovirt_files()
    name = "a/b" if case == "bad-name" else "rhvh-4.5"
    if case == "taken":
        assert run_cli("media", "import", str(make_iso(tmp_path / "first.iso", files)), "--name", name,
                       config=cfg).returncode == 0
    if case == "no-kernel":
        del files["images/pxeboot/vmlinuz"]
    if case == "liveimg-missing":
        del files[LIVE]
    iso = tmp_path / "x.iso"
    if case == "not-an-iso":
        iso.write_bytes(os.urandom(100_000))
    else:
        make_iso(iso, files)
    before = sorted(p.name for p in (tmp_path / "media").iterdir())
    res = run_cli("media", "import", str(iso), "--name", name, config=cfg)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert sorted(p.name for p in (tmp_path / "media").iterdir()) == before  # no partial copy left


def test_media_a_live_build_boots_cannot_be_removed(cfg, tmp_path):
    iso = make_iso(tmp_path / "ovirt.iso", _ovirt_files())
    assert run_cli("media", "import", str(iso), "--name", "rhvh-4.5", config=cfg).returncode == 0
    svc = services.build(config_mod.load(cfg), bootcheck=False)
    try:
        svc.store.arm("rhvnode3", svc.key, 600)  # a rhvh node: [defaults] rhvh_media = "rhvh-4.5"
        res = run_cli("media", "remove", "rhvh-4.5", config=cfg)
        assert res.returncode == 1 and "booted by the live builds of rhvnode3" in res.stderr
        assert (tmp_path / "media" / "rhvh-4.5" / LIVE).is_file() and "rhvh-4.5" in run_cli("media", "list", config=cfg).stdout
        svc.store.end_build("rhvnode3", "done")
        res = run_cli("media", "remove", "rhvh-4.5", config=cfg)
        assert res.returncode == 0, res.stderr
        assert not (tmp_path / "media" / "rhvh-4.5").exists() and "rhvh-4.5" not in run_cli("media", "list", config=cfg).stdout
        res = run_cli("media", "remove", "rhvh-4.5", config=cfg)
        assert res.returncode == 2 and "media 'rhvh-4.5' is not imported" in res.stderr
    finally:
        svc.close()
