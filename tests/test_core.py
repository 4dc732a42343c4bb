"""The rules HTTP and TFTP share (provision/core), one table per rule, with no server under them."""

from __future__ import annotations

import ipaddress
import os

import pytest

from provision.core import files
from provision.core.boot import BootFiles
from provision.core.kickstart import MAX_MAC_HEADERS, decide, macs_from
from provision.core.sources import from_node
from provision.domain import load_yaml, parse_nodes

from .conftest import EXAMPLE

MAC3, MAC4, OTHER = "0c:c4:7a:3b:03:01", "0c:c4:7a:3b:04:01", "02:00:00:00:00:77"
NODE3_IP = "192.0.2.13"


@pytest.fixture
def store(svc):
    svc.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    return svc.store


# -- the kickstart decision -----------------------------------------------------------------------
def _case(store, svc, case: str):
    """(token, macs, peer, install_sources) for one row of the table."""
    build, token = store.arm("rhvnode3", svc.key, 3600)
    good = ([MAC3], NODE3_IP, ())
    if case == "ok":
        return (token, *good)
    if case == "ok-declared-source":
        return token, [MAC3], "10.77.0.9", [ipaddress.ip_network("10.77.0.0/16")]
    if case == "ok-mapped-ipv6":
        return token, [MAC3], f"::ffff:{NODE3_IP}", ()
    if case == "malformed":
        return ("short", *good)
    if case == "unknown":
        return ("A" * 43, *good)
    if case == "expired":
        _b, t = store.arm("rhvnode3", svc.key, -1)
        return (t, *good)
    if case == "installed":
        store.set_boot_local(build.id)
        return (token, *good)
    if case == "no-mac":
        return token, [], NODE3_IP, ()
    if case == "mac-unknown":
        return token, [OTHER], NODE3_IP, ()
    if case == "mac-foreign":
        return token, [MAC3, MAC4], NODE3_IP, ()
    if case == "mac-invalid":
        return token, macs_from(["eth0 not-a-mac"]), NODE3_IP, ()
    if case == "mac-flood":
        return token, [MAC3] * (MAX_MAC_HEADERS + 1), NODE3_IP, ()
    if case == "source-other-host":
        return token, [MAC3], "192.0.2.99", ()
    if case == "source-another-nodes-address":
        return token, [MAC3], "192.0.2.14", ()
    if case == "source-garbage":
        return token, [MAC3], "not-an-address", ()
    raise AssertionError(case)


@pytest.mark.parametrize("case, status, reason", [
    ("ok", 200, "ok"), ("ok-declared-source", 200, "ok"), ("ok-mapped-ipv6", 200, "ok"),
    ("malformed", 404, "malformed"), ("unknown", 404, "unknown"), ("expired", 403, "expired"),
    ("installed", 403, "installed"), ("no-mac", 403, "no-mac"), ("mac-unknown", 403, "mac"),
    ("mac-foreign", 403, "mac"), ("mac-invalid", 403, "mac"), ("mac-flood", 403, "mac"),
    ("source-other-host", 403, "source"), ("source-another-nodes-address", 403, "source"),
    ("source-garbage", 403, "source"),
])
def test_the_kickstart_decision(store, svc, case, status, reason):
    d = decide(store, *_case(store, svc, case))
    assert (d.status, d.reason, d.allowed) == (status, reason, status == 200)
    if reason in ("no-mac", "mac", "source"):
        assert d.detail and d.build.node == "rhvnode3"  # told in the node's event log
    if d.allowed:
        assert d.build.node == "rhvnode3"


# -- sources --------------------------------------------------------------------------------------
@pytest.mark.parametrize("peer, declared, ok", [
    ("192.0.2.13", [], True), ("198.51.100.13", [], True), ("192.0.2.14", [], False),
    ("::ffff:192.0.2.13", [], True), ("10.1.2.3", ["10.0.0.0/8"], True), ("10.1.2.3", ["10.1.3.0/24"], False),
    ("", [], False), (None, [], False), ("192.0.2.13\n", [], False), ("2001:db8::1", ["2001:db8::/64"], True),
])
def test_whether_a_request_comes_from_the_node(peer, declared, ok):
    own = [ipaddress.ip_address("192.0.2.13"), ipaddress.ip_address("198.51.100.13")]
    assert from_node(peer, own, [ipaddress.ip_network(n) for n in declared]) is ok


# -- served files ---------------------------------------------------------------------------------
@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "images").mkdir(parents=True)
    (r / "images" / "vmlinuz").write_bytes(b"K" * 10)
    (r / "grub.cfg.j2").write_text("template")
    (r / "README.md").write_text("doc")
    (tmp_path / "secret").write_text("s")
    (r / "out").symlink_to(tmp_path / "secret")
    (r / "in").symlink_to(r / "images" / "vmlinuz")
    (r / "loop").symlink_to(r / "loop")
    os.mkfifo(r / "fifo")
    return r


@pytest.mark.parametrize("rel, outcome", [
    ("images/vmlinuz", "file"), ("in", "file"), ("out", "refused"), ("../secret", "refused"),
    ("images/../images/vmlinuz", "refused"), ("images//vmlinuz", "refused"), ("./images/vmlinuz", "refused"),
    ("", "refused"), ("images", "refused"), ("fifo", "refused"), ("grub.cfg.j2", "refused"), ("README.md", "refused"),
    ("missing", "not-found"), ("a\x00b", "refused"), ("a\nb", "refused"), ("a\x7fb", "refused"),
    ("x" * 256, "refused"), ("x" * 255, "not-found"), ("/".join(["d" * 200] * 21), "refused"), ("loop", "not-found"),
    ("images/vmlinuz/x", "not-found"),
])
def test_which_files_are_served(root, rel, outcome):
    got, opened = files.open_under(root, rel)
    assert got == outcome
    if opened is not None:
        try:
            assert os.read(opened.fd, 20) == b"K" * 10 and opened.size == 10
        finally:
            os.close(opened.fd)


# -- boot names -----------------------------------------------------------------------------------
class _Cache:
    def boot_config(self, kind, mac):
        if mac == "0c:c4:7a:3b:03:99":
            raise ValueError("partial facts")
        return f"{kind} for {mac}".encode() if mac == MAC3 else None


@pytest.mark.parametrize("name, outcome, data", [
    ("grub.cfg-01-0c-c4-7a-3b-03-01", "config", b"grub for " + MAC3.encode()),
    ("/EFI/BOOT/grub.cfg-01-0c-c4-7a-3b-03-01", "config", b"grub for " + MAC3.encode()),
    ("pxelinux.cfg/01-0c-c4-7a-3b-03-01", "config", b"pxelinux for " + MAC3.encode()),
    ("grub.cfg-01-02-00-00-00-00-77", "unknown-mac", None),
    ("grub.cfg-01-0c-c4-7a-3b-03-99", "render-error", None),
    ("grub.cfg-01-0c-c4-7a-3b-03-01\n", "refused", None),  # not a per-MAC name, and no file name either
    ("media/images/vmlinuz", "file", None), ("images/vmlinuz", "not-found", None),
    ("media/../root/images/vmlinuz", "refused", None),
])
def test_what_a_boot_client_gets_for_a_name(root, tmp_path, name, outcome, data):
    boot = tmp_path / "boot"
    boot.mkdir()
    served = BootFiles(boot, root, _Cache()).lookup(name)
    assert served.outcome == outcome and served.data == data
    if served.file is not None:
        os.close(served.file.fd)
