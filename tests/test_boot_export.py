"""[paths] boot_export: the per-MAC GRUB and pxelinux configs as files for the nginx front
(render/cache.py Export). A file is never staler than serve's own answer for a change made in serve,
an expired build's files are rewritten, and serve leaves no files behind when it stops."""

from __future__ import annotations

import dataclasses

import pytest

from provision import config as config_mod
from provision import services
from provision.domain import load_yaml, parse_nodes
from provision.render.cache import BootCache

from .conftest import EXAMPLE, write_config

MAC3 = "0c-c4-7a-3b-03-01"


@pytest.fixture
def svc(tmp_path):
    cfg = config_mod.load(write_config(tmp_path, extra=f'boot_export = "{tmp_path}/export"\n'))
    s = services.build(cfg, bootcheck=False)
    s.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    yield s
    s.close()


def _grub(tmp_path):
    return tmp_path / "export" / "boot" / "grub" / f"grub.cfg-01-{MAC3}"


def test_every_nodes_configs_are_written_and_follow_its_changes(svc, tmp_path):
    cache = svc.bootcache
    (tmp_path / "export" / "boot" / "grub").mkdir(parents=True)
    (tmp_path / "export" / "boot" / "grub" / "grub.cfg-01-02-00-00-00-00-99").write_text("left by a crash")
    cache.start(background=False)
    try:
        while not cache.warmed:
            cache.step()
        grub = _grub(tmp_path)
        assert "local boot" in grub.read_text() and grub.read_bytes() == cache.boot_config("grub", MAC3.replace("-", ":"))
        assert (tmp_path / "export" / "boot" / "pxelinux.cfg" / f"01-{MAC3}").is_file()
        assert not (tmp_path / "export" / "boot" / "grub" / "grub.cfg-01-02-00-00-00-00-99").exists()
        every_mac = {p.name for p in (tmp_path / "export" / "boot" / "grub").iterdir()}
        assert len(every_mac) == sum(len(n.node.facts.macs()) for n in svc.store.list_nodes())
        build, _ = svc.store.arm("rhvnode3", svc.key, 3600)
        assert not grub.exists()  # a change in this process: gone at once, the front asks serve
        cache.step()
        assert "set default=install" in grub.read_text()
        svc.store.set_boot_local(build.id)  # `installed`
        assert not grub.exists()
        cache.step()
        assert "local boot" in grub.read_text()
    finally:
        cache.stop()
    assert list((tmp_path / "export" / "boot" / "grub").iterdir()) == []  # serve stopped: no configs left


def test_an_expired_builds_files_are_rewritten(svc, tmp_path):
    """An armed build that expires changes nothing in the store: the refresher rewrites its files
    when the expiry passes (serve's own answer checks the expiry on every request)."""
    import threading

    from provision.store import utcnow

    cache = svc.bootcache
    cache.start(background=False)
    try:
        while not cache.warmed:
            cache.step()
        build, _ = svc.store.arm("rhvnode3", svc.key, 1)
        cache.step()
        assert "set default=install" in _grub(tmp_path).read_text()
        passed = threading.Event()
        while utcnow() <= build.expires_at:  # until the expiry has passed (not a guess of how long)
            passed.wait(0.05)
        cache.step()
        assert "local boot" in _grub(tmp_path).read_text()
    finally:
        cache.stop()


def test_another_process_never_deletes_what_serve_wrote(svc, tmp_path):
    """A CLI process builds its own (unstarted) cache over the same export directory: its commits
    drop only files it wrote itself, which is none."""
    serve_cache = svc.bootcache
    serve_cache.start(background=False)
    try:
        while not serve_cache.warmed:
            serve_cache.step()
        other = BootCache(svc.store, svc.renderer, export=tmp_path / "export")
        other._dirty({"rhvnode3": 10**9})
        assert _grub(tmp_path).is_file()
    finally:
        serve_cache.stop()


def test_without_boot_export_nothing_is_written(tmp_path):
    cfg = config_mod.load(write_config(tmp_path))
    s = services.build(cfg, bootcheck=False)
    try:
        assert s.bootcache.export is None and dataclasses.is_dataclass(s)
    finally:
        s.close()
