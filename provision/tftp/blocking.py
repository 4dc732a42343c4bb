"""One big transfer in a process of its own, as tftpd-hpa does it: a pump process forks a child per
file it is handed, and the child sends the file in a blocking lockstep loop, in C (`_sendloop.c`,
built by setup.py when provision is installed) with the interpreter out of the way.

Why: a TFTP transfer is one DATA out and one ACK in per block, and on a loopback benchmark the
clients share the cores. One event loop serving many big transfers was latency-bound (a client
waited while the loop served the others, and cores went idle); a process per transfer keeps every
core busy and wakes exactly the process an ACK is for, with two system calls per block.

There is one loop per language: this one in C, and the engine's event loop in Python
(engine.py). Where the C loop was not built (no C compiler at install) there are no pumps and the
engine sends every file; `native()` tells which. Both are driven by one parity suite
(tests/test_sendloop.py)."""

from __future__ import annotations

import socket

try:
    from . import _sendloop  # type: ignore[attr-defined]  # setup.py builds it; optional
except ImportError:  # not built (no C compiler where provision was installed)
    _sendloop = None


def native() -> bool:
    """Whether the C send loop (`_sendloop.c`) was built when provision was installed."""
    return _sendloop is not None


def send_file(sock: socket.socket, fd: int, size: int, blksize: int, timeout: float, retries: int,
              first: bytes = b"") -> bool:
    """Send the first `size` bytes of the file open on `fd` to the peer `sock` is connected to: the
    OACK `first` (acked by block 0) when options were agreed, then DATA blocks 1.. until the short
    one. True when the last block was acknowledged."""
    assert _sendloop is not None, "no C send loop: the engine sends (see native())"
    sock.setblocking(True)
    return _sendloop.send_file(sock.fileno(), fd, size, blksize, max(1, int(timeout)), retries, first)
