"""What one TFTP client address can hold of the server (provision/tftp/engine.py): a bound on its
transfers, a cap on the timeout it may ask for, and a handed-off transfer that still counts, so a
flood of requests from one place cannot lock the other clients out."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading

import pytest

from provision.tftp.engine import TftpService
from provision.tftp.files import FileResolver

from . import rawtftp
from .conftest import wait_until


@pytest.fixture
def tftp(tmp_path):
    started = []

    def start(pumps: int = 0, **kw):
        root = tmp_path / "boot"
        root.mkdir(exist_ok=True)
        svc = TftpService(FileResolver(root, tmp_path / "media", None), timeout=2.0, retries=3, **kw)
        port = svc.bind("127.0.0.1", 0)
        svc.start_pumps(pumps)
        thread = threading.Thread(target=svc.serve_forever, daemon=True)
        thread.start()
        started.append((svc, thread))
        return svc, root, port

    yield start
    for svc, thread in started:
        svc.stop()
        thread.join(30)


def _rrq(name: str, **options) -> bytes:
    return struct.pack("!H", rawtftp.RRQ) + name.encode() + b"\0octet\0" + b"".join(
        f"{k}\0{v}\0".encode() for k, v in options.items())


def _curl(port: int, name: str) -> bytes:
    res = subprocess.run(["curl", "-sS", "--max-time", "60", f"tftp://127.0.0.1:{port}/{name}"],
                         capture_output=True, timeout=90)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("asked, acknowledged", [("5", "5"), ("10", "10"), ("11", None), ("255", None)])
def test_a_clients_timeout_is_taken_up_to_the_cap(tftp, asked, acknowledged):
    svc, root, port = tftp(max_timeout=10)
    (root / "f").write_bytes(b"x" * 100)
    op, payload, sock, _addr = rawtftp.request(port, "f", options={"timeout": asked, "tsize": "0"})
    sock.close()
    assert op == rawtftp.OACK
    assert rawtftp.parse_oack(payload).get("timeout") == acknowledged
    wait_until("the unacknowledged session ended", lambda: svc.session_count == 0)


def test_one_source_has_at_most_its_transfers_and_others_are_served(tftp):
    svc, root, port = tftp(per_source=4)
    (root / "f").write_bytes(b"x" * 5000)
    held = []
    try:
        for _ in range(4):  # half-open: asked, never acknowledged
            op, _payload, sock, _addr = rawtftp.request(port, "f", source="127.0.0.2")
            assert op == rawtftp.DATA
            held.append(sock)
        op, payload, sock, _addr = rawtftp.request(port, "f", source="127.0.0.2")
        sock.close()
        assert op == rawtftp.ERROR and rawtftp.error_code(payload) == 0 and b"this address" in payload
        assert svc.refused_source == 1
        assert _curl(port, "f") == b"x" * 5000  # another address is served meanwhile
    finally:
        for s in held:
            s.close()
    wait_until("the half-open sessions timed out", lambda: svc.session_count == 0)
    op, _payload, sock, _addr = rawtftp.request(port, "f", source="127.0.0.2")  # its slots are back
    sock.close()
    assert op == rawtftp.DATA


def test_a_flood_of_half_open_requests_from_one_place_does_not_lock_out_another(tftp):
    """2,000 RRQs from 127.0.0.2, none acknowledged, some asking timeout=255: that source holds
    per_source sessions; 127.0.0.1 is served at once all the same."""
    svc, root, port = tftp(per_source=16, max_sessions=256)
    (root / "f").write_bytes(data := os.urandom(20_000))
    flood = []
    for i in range(2000):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.2", 0))
        s.sendto(_rrq("f", **({"timeout": "255"} if i % 2 else {})), ("127.0.0.1", port))
        flood.append(s)
    try:
        wait_until("the flood was read", lambda: svc.refused_source >= 1900)
        assert svc.session_count <= 16
        assert _curl(port, "f") == data
    finally:
        for s in flood:
            s.close()


def test_a_transfer_handed_to_a_pump_still_holds_its_peer(tftp):
    """Three identical RRQs (a client's retransmits) start one transfer, also when it is a pump's;
    its peer and source entries go once the pump reports its end."""
    svc, root, port = tftp(pumps=1)
    data = os.urandom(100_000)  # 196 blocks of 512: a pump's
    (root / "big.img").write_bytes(data)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(10)
    try:
        for _ in range(3):
            sock.sendto(_rrq("big.img"), ("127.0.0.1", port))
        first, addr = sock.recvfrom(1024)
        assert first[:4] == b"\0\3\0\1"
        wait_until("the main loop read all three", lambda: svc.pumps[0].in_flight == 1 and len(svc._peers) == 1)
        assert svc.session_count == 1 and not svc.sessions  # the pump has it, and only it
        got, block, packet = bytearray(first[4:]), 1, first
        while len(packet) - 4 == 512:
            sock.sendto(struct.pack("!HH", rawtftp.ACK, block), addr)
            packet = sock.recv(1024)
            block += 1
            assert packet[:4] == struct.pack("!HH", rawtftp.DATA, block)
            got += packet[4:]
        sock.sendto(struct.pack("!HH", rawtftp.ACK, block), addr)
        assert bytes(got) == data
        wait_until("the pump reported the end", lambda: not svc._peers and not svc._sources)
        assert svc.pumps[0].in_flight == 0
    finally:
        sock.close()


def test_a_name_cannot_forge_a_log_line_and_misses_do_not_flood_the_log(tftp, caplog):
    import logging

    svc, root, port = tftp()
    (root / "f").write_bytes(b"x")
    caplog.set_level(logging.INFO, logger="provision.tftp")
    op, _payload, sock, _addr = rawtftp.request(port, "nothing\nprovision.serve INFO all good")
    sock.close()
    assert op == rawtftp.ERROR
    for _ in range(200):  # a miss storm: nothing at INFO
        rawtftp.send_raw(port, _rrq("missing"))
    assert _curl(port, "f") == b"x"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not any("\n" in m for m in lines)
    assert not any("missing" in m or "nothing" in m for m in lines), lines


def test_a_pump_that_exits_is_reported_once(tftp, caplog):
    import logging

    svc, _root, _port = tftp(pumps=1)
    caplog.set_level(logging.ERROR, logger="provision.tftp")
    pump = svc.pumps[0]
    pump.proc.kill()
    pump.proc.wait(30)
    wait_until("the main loop saw the pump go", lambda: not pump.alive)
    threading.Event().wait(0.5)  # the loop goes round many times meanwhile
    assert sum("exited" in r.getMessage() for r in caplog.records) == 1
