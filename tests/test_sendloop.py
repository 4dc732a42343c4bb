"""The send loop a pump's child runs for one big TFTP transfer (provision/tftp/blocking.py), in both
of its forms: the C loop (`_sendloop.c`, built when provision is installed) and the Python loop
it falls back to. Each test drives one of them over real UDP sockets on loopback, the test
playing the client packet by packet: the same protocol from both, whatever the file or the
client does."""

from __future__ import annotations

import os
import socket
import struct
import threading
from pathlib import Path

import pytest

from provision.tftp import blocking

LOOPS = ["native", "python"]
ACK, DATA, ERROR = 4, 3, 5


def test_the_c_loop_is_built_by_the_install():
    """`make test` installs provision as users do (pip install -e .); setup.py builds the C loop
    there. Were it silently not built, every test below would still pass on the Python loop."""
    assert blocking.native(), "provision/tftp/_sendloop.c was not built (no C compiler or Python headers?)"


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
                self.result.append(blocking.send_file(self.server, self.fd, len(data) if size is None else size,
                                                      blksize, timeout, retries, first, loop == "native"))
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
def test_a_file_that_shrank_ends_at_its_short_block(tmp_path, loop):
    """The size was taken when the request came; the file is shorter by the time it is read. Its
    short block ends the transfer, as the client takes it: no empty blocks after it, no waiting
    out the retries for ACKs that will not come."""
    data = os.urandom(2000)
    t = Transfer(tmp_path, data, loop, size=300_000, timeout=5, retries=5)
    assert _receive_all(t, 512) == data
    assert t.finish() is True  # returned on the last ACK: finish() waits 60 s, the retries 25


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
