"""The parity suite of the TFTP send loops, one per language: the C loop a pump's child runs for one
big transfer (`_sendloop.c` through provision/tftp/blocking.py, built when provision is installed)
and the engine's own event loop (provision/tftp/engine.py), which sends small files and, where the
C loop was not built, every file. Each test drives one of them over real UDP sockets on loopback,
the test playing the client packet by packet: the same protocol from both, whatever the file or
the client does."""

from __future__ import annotations

import os
import socket
import struct
import threading
from pathlib import Path

import pytest

from provision.tftp import blocking
from provision.tftp.engine import TftpService
from provision.tftp.transfer import Source

LOOPS = ["native", "engine"]
ACK, DATA, ERROR = 4, 3, 5


def test_the_c_loop_is_built_by_the_install():
    """`make test` installs provision as users do (pip install -e .); setup.py builds the C loop
    there. Were it silently not built, every test below would still pass on the Python loop."""
    assert blocking.native(), "provision/tftp/_sendloop.c was not built (no C compiler or Python headers?)"


class _OneTransfer(TftpService):
    """The engine with one session started by hand; `ended` is set when it ends."""

    def __init__(self, timeout: float, retries: int) -> None:
        super().__init__(None, timeout=timeout, retries=retries)
        self.ended = threading.Event()

    def _end(self, fd: int, ok: bool = False) -> None:
        had = fd in self.sessions
        super()._end(fd, ok)
        if had:
            self.ended.set()
            self.stop()


def _engine_send(server: socket.socket, fd: int, size: int, blksize: int, timeout: float, retries: int,
                 first: bytes) -> bool:
    engine = _OneTransfer(timeout, retries)
    server.setblocking(False)
    engine._start(server, server.getpeername(), Source(fd=os.dup(fd), size=size), blksize, timeout, first)
    engine._loop()
    return engine.completed == 1


class Transfer:
    """The server side running `blocking.send_file` in a thread, and a client socket connected to it."""

    def __init__(self, tmp_path: Path, data: bytes, loop: str, *, size: int | None = None, blksize: int = 512,
                 first: bytes = b"", timeout: float = 1.0, retries: int = 3) -> None:
        path = tmp_path / "file"
        path.write_bytes(data)
        self.fd = os.open(path, os.O_RDONLY)
        self.server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.server.bind(("127.0.0.1", 0))
        self.client.bind(("127.0.0.1", 0))
        self.server.connect(self.client.getsockname())
        self.client.connect(self.server.getsockname())
        self.client.settimeout(30)
        self.result: list[bool] = []
        self.done = threading.Event()

        def run() -> None:
            try:
                send = blocking.send_file if loop == "native" else _engine_send
                self.result.append(send(self.server, self.fd, len(data) if size is None else size,
                                        blksize, timeout, retries, first))
            finally:
                self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def recv(self) -> bytes:
        return self.client.recv(70000)

    def ack(self, block: int) -> None:
        self.client.send(struct.pack("!HH", ACK, block & 0xFFFF))

    def finish(self) -> bool:
        assert self.done.wait(60), "the send loop did not return"
        self.thread.join()
        self.server.close()
        self.client.close()
        os.close(self.fd)
        return self.result[0]


def _receive_all(t: Transfer, blksize: int) -> bytes:
    got, block = bytearray(), 1
    while True:
        packet = t.recv()
        assert packet[:2] == struct.pack("!H", DATA)
        assert struct.unpack("!H", packet[2:4])[0] == block & 0xFFFF
        got += packet[4:]
        t.ack(block)
        if len(packet) - 4 < blksize:
            return bytes(got)
        block += 1


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("length", [0, 511, 512, 100_000, 300_000])
def test_the_file_arrives_whole_in_order_ending_with_a_short_block(tmp_path, loop, length):
    """Lengths around a block and past one 256 KB read: a file of whole blocks ends with an empty one."""
    data = os.urandom(length)
    t = Transfer(tmp_path, data, loop)
    assert _receive_all(t, 512) == data
    assert t.finish() is True


@pytest.mark.parametrize("loop", LOOPS)
def test_the_oack_comes_first_and_block_0_acknowledges_it(tmp_path, loop):
    data = os.urandom(5000)
    oack = b"\0\6blksize\x001468\0tsize\x005000\0"
    t = Transfer(tmp_path, data, loop, blksize=1468, first=oack)
    assert t.recv() == oack
    t.ack(0)
    assert _receive_all(t, 1468) == data
    assert t.finish() is True


@pytest.mark.parametrize("loop", LOOPS)
def test_block_numbers_wrap_past_65535(tmp_path, loop):
    """blksize 8: 70,000 blocks, so block 65536 goes out as 0, as tftpd-hpa numbers them."""
    data = os.urandom(8 * 70_000 - 3)
    t = Transfer(tmp_path, data, loop, blksize=8)
    assert _receive_all(t, 8) == data
    assert t.finish() is True


@pytest.mark.parametrize("loop", LOOPS)
def test_a_file_that_shrank_is_an_error_not_a_short_end(tmp_path, loop):
    """The size was told (tsize) when the request came; the file is shorter by the time it is read.
    A short block would look like the end of a whole file: the client gets an ERROR instead, and
    the transfer is not counted as sent."""
    data = os.urandom(2000)
    t = Transfer(tmp_path, data, loop, size=300_000, timeout=5, retries=5)
    packet = t.recv()
    assert packet[:4] == b"\0\5\0\0" and b"changed" in packet
    assert t.finish() is False


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("told", [1000, 1024])
def test_a_file_that_grew_is_sent_to_the_size_told(tmp_path, loop, told):
    """Grown since the request: exactly the bytes told, ending with the short (or empty) block."""
    data = os.urandom(3000)
    t = Transfer(tmp_path, data, loop, size=told)
    assert _receive_all(t, 512) == data[:told]
    assert t.finish() is True


@pytest.mark.parametrize("loop", LOOPS)
def test_an_unanswered_block_is_sent_again_and_a_stale_ack_is_ignored(tmp_path, loop):
    data = os.urandom(3000)
    t = Transfer(tmp_path, data, loop, timeout=4, retries=5)
    first = t.recv()
    assert first[:4] == b"\0\3\0\1"
    assert t.recv() == first  # no ACK: the same block again after the timeout
    t.ack(1)
    second = t.recv()
    assert second[:4] == b"\0\3\0\2"
    t.ack(1)  # stale: nothing answers it (no Sorcerer's Apprentice); block 2 comes again on the timeout
    t.client.settimeout(1)  # a quarter of the server's timeout: a resend in it answered the stale ACK
    with pytest.raises(TimeoutError):
        t.recv()
    t.client.settimeout(30)
    assert t.recv() == second
    t.ack(2)
    rest = bytearray(second[4:])
    block = 3
    while True:
        packet = t.recv()
        assert packet[:4] == struct.pack("!HH", DATA, block)
        rest += packet[4:]
        t.ack(block)
        if len(packet) - 4 < 512:
            break
        block += 1
    assert first[4:] + bytes(rest) == data
    assert t.finish() is True


@pytest.mark.parametrize("loop", LOOPS)
def test_an_error_from_the_client_ends_the_transfer(tmp_path, loop):
    t = Transfer(tmp_path, os.urandom(10_000), loop, timeout=5, retries=5)
    assert t.recv()[:4] == b"\0\3\0\1"
    t.client.send(struct.pack("!HH", ERROR, 0) + b"enough\0")
    assert t.finish() is False


@pytest.mark.parametrize("loop", LOOPS)
def test_a_client_that_is_gone_ends_the_transfer(tmp_path, loop):
    """Its port closed: the kernel's ICMP port unreachable fails the connected socket's next send
    or receive (the timeout is 5 s, and 5 retries would take 25)."""
    t = Transfer(tmp_path, os.urandom(10_000), loop, timeout=5, retries=5)
    assert t.recv()[:4] == b"\0\3\0\1"
    t.ack(1)
    t.client.close()
    assert t.done.wait(60)
    t.thread.join()
    assert t.result == [False]
    t.server.close()
    os.close(t.fd)


@pytest.mark.parametrize("loop", LOOPS)
def test_retries_timeouts_end_the_transfer(tmp_path, loop):
    t = Transfer(tmp_path, os.urandom(10_000), loop, timeout=1, retries=2)
    first = t.recv()
    assert t.recv() == first  # sent again on a timeout, `retries` times at most
    assert t.finish() is False  # then it gives up, never acknowledged


@pytest.mark.parametrize("value", [7, 65465])
def test_the_c_loop_refuses_a_blksize_outside_rfc_2348(tmp_path, value):
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="blksize"):
            blocking._sendloop.send_file(0, fd, 10, value, 1, 1, b"")
    finally:
        os.close(fd)
