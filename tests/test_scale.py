"""Scale behaviour that is checked by counting, not timing: per-node boot-config caching (a change
re-renders that node only; other nodes are served from memory with no store query), changes made
by another process found by one indexed scan, waiting steps
woken by the callback instead of a poll, and the TFTP engine's pumps, block roll-over and
fallback when a pump dies (real sockets, real curl)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import struct
import subprocess
import threading
from pathlib import Path

import yaml
from sqlalchemy import event

from provision import config as config_mod
from provision import services
from provision.domain import parse_nodes
from provision.render.cache import BootCache
from provision.store import Store
from provision.tftp.engine import TftpService
from provision.tftp.files import FileResolver
from provision.tftp.pumps import Pump
from provision.workflow import states as S
from provision.workflow.machine import advance
from provision.workflow.runner import drive

from . import rawtftp
from .conftest import EXAMPLE, wait_until, write_config


def _svc(tmp_path: Path):
    svc = services.build(config_mod.load(write_config(tmp_path)), bootcheck=False)
    svc.store.import_nodes(parse_nodes(yaml.safe_load(EXAMPLE.read_text())))
    return svc


def _macs(svc, name: str) -> list[str]:
    return svc.store.get(name).node.facts.macs()


def _queries(store: Store) -> list[str]:
    """Every statement the store runs through SQLAlchemy from now on, and "BEGIN" for every
    transaction it begins (emitted on the driver's connection, so not a cursor event)."""
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a, **k: seen.append(a[2]))
    event.listen(store.engine, "begin", lambda *a, **k: seen.append("BEGIN"))
    return seen


def test_a_change_rerenders_that_node_only_and_the_others_cost_no_query(tmp_path):
    svc = _svc(tmp_path)
    try:
        cache = BootCache(svc.store, svc.renderer)
        cache.step()  # sync and render the changed nodes (all of them, the first time)
        a, b = "rhvnode3", "rhvnode4"
        mac_a, mac_b = _macs(svc, a)[0], _macs(svc, b)[0]
        before_b = cache.boot_config("grub", mac_b)
        local_a = cache.boot_config("grub", mac_a)
        renders, queries = cache.renders, _queries(svc.store)
        assert cache.boot_config("grub", mac_b) == before_b and queries == []  # a dictionary hit
        svc.store.arm(a, svc.key, 600)  # in this process: node a is dropped from the cache at once
        armed_a = cache.boot_config("grub", mac_a)
        assert armed_a != local_a and b"inst.ks=" in armed_a  # served the install config right away
        assert cache.renders == renders + 1
        cache.step()  # the refresher: re-renders node a's kinds, nobody else's
        assert cache.renders == renders + 1 + 4  # grub, pxelinux, ipxe and the kickstart of a only
        queries.clear()
        assert cache.boot_config("grub", mac_b) == before_b and cache.boot_config("grub", mac_a) == armed_a
        assert queries == []
    finally:
        svc.close()


def test_a_change_from_another_process_is_found_by_one_scan(tmp_path):
    svc = _svc(tmp_path)
    other = Store(svc.cfg.server.db_url)  # a second store on the database: the CLI runner's process
    try:
        cache = BootCache(svc.store, svc.renderer)
        cache.step()
        mac = _macs(svc, "rhvnode5")[0]
        local = cache.boot_config("grub", mac)
        seen = cache.seen
        other.arm("rhvnode5", svc.key, 600)  # svc.store's listeners do not hear this one
        generation, changed = svc.store.changed_since(seen)
        assert list(changed) == ["rhvnode5"] and generation == seen + 1
        queries = _queries(svc.store)
        cache.step()
        # two transactions: the scan, then one render view of the one changed node (3 nodes or 5,000)
        assert len(queries) <= 8 and sum(q == "BEGIN" for q in queries) == 2, queries
        assert cache.boot_config("grub", mac) != local
    finally:
        other.close()
        svc.close()


def test_a_state_move_renders_nothing_and_still_wakes_the_nodes_runner(tmp_path):
    """Nothing a node is served depends on its state: a rebuild's ten moves per node used to
    drop its four cached configs each time, and the refresher rendered them again."""
    svc = _svc(tmp_path)
    try:
        cache = BootCache(svc.store, svc.renderer)
        cache.step()
        mac = _macs(svc, "rhvnode3")[0]
        served = cache.boot_config("grub", mac)
        renders, generation = cache.renders, svc.store.generation()
        woken = svc.store.change_event("rhvnode3")
        woken.clear()
        assert advance(svc.store, "rhvnode3", "start", expect=S.READY, rebuild_id=1) == S.PREFLIGHT
        assert woken.is_set()  # a runner waiting on this node wakes at once
        cache.step()
        queries = _queries(svc.store)
        assert cache.boot_config("grub", mac) == served and queries == []  # still a dictionary hit
        assert cache.renders == renders and svc.store.generation() == generation
        svc.store.arm("rhvnode3", svc.key, 600)  # a build does change what it is served
        assert svc.store.generation() == generation + 1 and b"inst.ks=" in cache.boot_config("grub", mac)
    finally:
        svc.close()


def test_a_waiting_step_wakes_on_the_callback_not_on_a_poll(tmp_path):
    """The poll interval is an hour: only the change event can wake the runner."""
    svc = _svc(tmp_path)
    try:
        ctx = dataclasses.replace(svc, poll=3600.0)
        name = "rhvnode3"
        svc.store.set_state(name, S.INSTALLING)
        stop, result, waiting = threading.Event(), [], threading.Event()
        original = svc.store.change_event(name).wait

        def traced_wait(timeout=None):
            waiting.set()
            return original(timeout)

        svc.store.change_event(name).wait = traced_wait
        runner = threading.Thread(target=lambda: result.append(drive(ctx, name, stop=stop)))
        runner.start()
        assert waiting.wait(60)  # the runner is parked on the event
        stop.set()  # finish the step it is in, then return
        assert advance(svc.store, name, "installed", expect=S.INSTALLING) == S.ENROLL  # what the callback does
        runner.join(60)
        assert not runner.is_alive() and result == [S.ENROLL]
    finally:
        svc.close()


# -- the TFTP engine -----------------------------------------------------------------------------
def _tftp(tmp_path: Path, pumps: int, **limits):
    root = tmp_path / "boot"
    root.mkdir()
    svc = TftpService(FileResolver(root, tmp_path / "media", None), timeout=1.0, retries=10, **limits)
    port = svc.bind("127.0.0.1", 0)
    svc.start_pumps(pumps)
    thread = threading.Thread(target=svc.serve_forever, daemon=True)
    thread.start()
    return svc, thread, root, port


def _curl(port: int, name: str, blksize: int | None = None) -> bytes:
    args = ["curl", "-sS", "--max-time", "120"] + (["--tftp-blksize", str(blksize)] if blksize else [])
    res = subprocess.run(args + [f"tftp://127.0.0.1:{port}/{name}"], capture_output=True, timeout=180)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_big_files_go_through_the_pumps_and_arrive_intact(tmp_path):
    svc, thread, root, port = _tftp(tmp_path, pumps=2)
    try:
        assert len(svc.pumps) == 2 and all(p.alive for p in svc.pumps)  # each said it is ready
        data = os.urandom(3 * 1024 * 1024 + 17)
        (root / "loader.efi").write_bytes(data)
        (root / "small.cfg").write_bytes(b"tiny\n")
        got = [None] * 4

        def fetch(i):
            got[i] = _curl(port, "loader.efi", 1468)

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(hashlib.sha256(g).digest() == hashlib.sha256(data).digest() for g in got)
        assert _curl(port, "small.cfg") == b"tiny\n"
        pids = [p.pid for p in svc.pumps]
        # utime, stime, then cutime, cstime: the children each pump forked for a transfer, reaped
        cpu = [[int(x) for x in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11:15]] for pid in pids]
        assert sum(c[2] + c[3] for c in cpu) > 0, cpu  # the pumps' children did the sending
    finally:
        svc.stop()
        thread.join(30)
    assert all(p.proc.poll() is not None for p in svc.pumps)  # no pump outlives the server


def test_block_numbers_roll_over_past_65535(tmp_path):
    """blksize 8 and 600,000 bytes: 75,001 blocks, so block numbers wrap to 0 (as tftpd-hpa's)."""
    svc, thread, root, port = _tftp(tmp_path, pumps=1)
    try:
        data = os.urandom(600_000)
        (root / "big.img").write_bytes(data)
        assert _curl(port, "big.img", 8) == data
    finally:
        svc.stop()
        thread.join(30)


def test_a_pump_that_does_not_start_is_not_used(tmp_path):
    """start_pumps waits for each pump's ready byte, so `serve` says it serves only once its
    pumps can take transfers; one that never says it is ready is marked dead (big files then go
    from the main loop) instead of holding transfers it will never run."""
    silent, _theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ready, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.send(b"r")
    proc = subprocess.Popen(["sleep", "60"])
    try:
        mute, speaking = Pump(proc, silent), Pump(proc, ready)
        mute.wait_ready(timeout=0.2)
        speaking.wait_ready(timeout=30)
        assert not mute.alive and speaking.alive
        assert not speaking.control.getblocking()  # back to the main loop's non-blocking reads
    finally:
        proc.kill()
        proc.wait()
        for s in (silent, _theirs, ready, theirs):
            s.close()


def test_a_dead_pump_is_noticed_and_the_main_loop_sends_instead(tmp_path):
    svc, thread, root, port = _tftp(tmp_path, pumps=1)
    try:
        data = os.urandom(1024 * 1024)
        (root / "loader.efi").write_bytes(data)
        pump = svc.pumps[0]
        pump.proc.kill()
        pump.proc.wait(30)
        assert _curl(port, "loader.efi", 1468) == data
        assert not pump.alive and svc.session_count == 0
    finally:
        svc.stop()
        thread.join(30)


def test_a_transfer_in_a_pump_child_keeps_the_protocol(tmp_path):
    """A big file goes to a pump, which forks a child that sends it in a blocking loop: without
    an ACK the block comes again after the timeout; a duplicate ACK sends nothing; an ERROR from
    the client ends it, and so do `retries` timeouts; each end is reported to the main loop."""
    root = tmp_path / "boot"
    root.mkdir()
    data = os.urandom(100_000)  # 196 blocks of 512: a pump's
    (root / "big.img").write_bytes(data)
    svc = TftpService(FileResolver(root, tmp_path / "media", None), timeout=2.0, retries=2)
    port = svc.bind("127.0.0.1", 0)
    svc.start_pumps(1)
    thread = threading.Thread(target=svc.serve_forever, daemon=True)
    thread.start()
    try:
        op, payload, sock, addr = rawtftp.request(port, "big.img", timeout=10)
        assert op == rawtftp.DATA and payload[:2] == b"\0\1" and payload[2:] == data[:512]
        assert sock.recv(1024) == b"\0\3" + payload  # no ACK: block 1 again, one timeout later
        assert svc.session_count == 1
        sock.sendto(struct.pack("!HH", rawtftp.ACK, 1), addr)
        block2 = sock.recv(1024)
        assert block2 == b"\0\3\0\2" + data[512:1024]
        sock.sendto(struct.pack("!HH", rawtftp.ACK, 1), addr)  # a duplicate: no resend for it
        sock.settimeout(1.0)  # block 2 again only after the 2 s timeout
        try:
            early = sock.recv(1024)
        except TimeoutError:
            early = None
        assert early is None, early
        sock.sendto(struct.pack("!HH", rawtftp.ERROR, 0) + b"enough\0", addr)
        wait_until("the child ends on the client's ERROR", lambda: svc.session_count == 0)
        sock.close()
        op, _, sock, addr = rawtftp.request(port, "big.img", timeout=10)
        assert op == rawtftp.DATA and svc.session_count == 1
        sock.close()  # the client is gone: two timeouts, then the child gives up
        wait_until("the child gives up after its retries", lambda: svc.session_count == 0)
    finally:
        svc.stop()
        thread.join(30)
