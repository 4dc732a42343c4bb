"""One big transfer in a process of its own, as tftpd-hpa does it: a pump process forks a child per
file it is handed, and the child sends the file in a blocking lockstep loop.

Why: a TFTP transfer is one DATA out and one ACK in per block, and on a loopback benchmark the
clients share the cores. One event loop serving many transfers was latency-bound (a client
waited while the loop served the others, and cores went idle: 0.6-0.76x tftpd-hpa); a process
per transfer keeps every core busy and wakes exactly the process an ACK is for. The loop is
two system calls per block (send, and a recv that the kernel times out through SO_RCVTIMEO),
and each 256 KB is read at once; tftpd-hpa makes eight. The loop runs in C (`_sendloop.c`,
built by setup.py when provision is installed) with the interpreter out of the way: in Python
it cost 4 us of user CPU per block, more than the kernel's send and receive together, and the
clients share those cores. The Python loop below is the same protocol, for where no C compiler
was at hand (`provision.tftp.blocking.native()` tells which) or `[server] tftp_send_loop =
"python"`.

Same protocol as the engine: a duplicate or stale ACK is ignored (the timeout, not it, triggers
a resend: no Sorcerer's Apprentice), `retries` timeouts end the transfer, an ERROR from the
client or an ICMP error ends it, block numbers roll over past 65535."""

from __future__ import annotations

import functools
import os
import socket
import struct
import time

from .transfer import ACK, DATA, ERROR, HEADER

CHUNK = 256 * 1024
_ERROR = struct.pack("!H", ERROR)

try:
    from . import _sendloop  # the same loop in C (setup.py builds it; optional)
except ImportError:  # not built (no C compiler where provision was installed): the loop below
    _sendloop = None


class _Gone(Exception):
    """The client stopped: an ERROR, an ICMP error, or `retries` timeouts."""


def native() -> bool:
    """Whether the C send loop (`_sendloop.c`) was built when provision was installed."""
    return _sendloop is not None


def prepare(use_native: bool) -> None:
    """In a pump, before it forks: build what its children share (copy on write)."""
    if not (use_native and native()):
        _tables()


@functools.cache
def _tables() -> tuple[list[bytes], list[bytes]]:
    """Every DATA header and ACK, built once per pump: a block of the Python loop then costs no
    struct packing."""
    return [HEADER.pack(DATA, n) for n in range(65536)], [HEADER.pack(ACK, n) for n in range(65536)]


def send_file(sock: socket.socket, fd: int, size: int, blksize: int, timeout: float, retries: int,
              first: bytes = b"", use_native: bool = True) -> bool:
    """Send the file open on `fd` to the peer `sock` is connected to: the OACK `first` (acked by
    block 0) when options were agreed, then DATA blocks 1.. until a short one. True when the
    last block was acknowledged. The C loop when it is built and `use_native`, else Python."""
    sock.setblocking(True)
    seconds = max(1, int(timeout))
    if use_native and _sendloop is not None:
        return _sendloop.send_file(sock.fileno(), fd, size, blksize, seconds, retries, first)
    return _send_file_python(sock, fd, size, blksize, seconds, retries, first)


def _send_file_python(sock: socket.socket, fd: int, size: int, blksize: int, seconds: int, retries: int,
                      first: bytes) -> bool:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", seconds, 0))
    recv, send = sock.recv, sock.send

    def exchange(packet: bytes, ack: bytes) -> None:
        """The slow path: `packet` again after a timeout, until `ack`; stale ACKs are ignored
        but do not stretch the wait for the right one."""
        for _ in range(retries):
            send(packet)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                data = _recv(recv)
                if data == ack:
                    return
                if data is not None and data[:2] == _ERROR:
                    raise _Gone
        raise _Gone

    try:
        if first:  # the OACK, acknowledged by block 0
            exchange(first, b"\0\4\0\0")
        last = size // blksize + 1  # a short (possibly empty) block ends the file
        per = max(1, CHUNK // blksize)
        block, (headers, all_acks) = 1, _tables()
        while block <= last:
            n = min(per, last - block + 1)
            chunk = os.pread(fd, n * blksize, (block - 1) * blksize)
            first_n = block & 0xFFFF
            numbers = range(first_n, first_n + n) if first_n + n <= 65536 else [(block + i) & 0xFFFF for i in range(n)]
            packets = [headers[b] + chunk[i * blksize:(i + 1) * blksize] for i, b in enumerate(numbers)]
            acks = [all_acks[b] for b in numbers]
            for packet, ack in zip(packets, acks, strict=True):
                send(packet)
                while True:  # the hot path: one recv, one comparison
                    try:
                        data = recv(16)  # an ACK is 4 bytes; an ERROR is recognised by its first 2
                    except (BlockingIOError, TimeoutError):  # SO_RCVTIMEO expired
                        exchange(packet, ack)
                        break
                    if data == ack:
                        break
                    if data[:2] == _ERROR:
                        raise _Gone
                if len(packet) - 4 < blksize:  # a short block ends the file (even one that shrank)
                    return True
            block += n
        return True
    except (_Gone, ConnectionError, OSError):
        return False


def _recv(recv) -> bytes | None:
    try:
        return recv(16)
    except (BlockingIOError, TimeoutError):
        return None

