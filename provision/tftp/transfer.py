"""One TFTP transfer: what is sent (Source) and the lockstep state of a session (Session)."""

from __future__ import annotations

import os
import socket
import struct

RFC2348_MAX = 65464  # largest blksize RFC 2348 allows (fits one UDP datagram with its 4-byte header)
DATA, ACK, ERROR, OACK = 3, 4, 5, 6
HEADER = struct.Struct("!HH")  # opcode and block number (DATA, ACK) or error code (ERROR)
CHUNK = 256 * 1024  # read-ahead: one pread per CHUNK bytes, not per block


def error_packet(code: int, message: str) -> bytes:
    """RFC 1350 ERROR: opcode 5, error code, message, NUL."""
    return struct.pack("!HH", ERROR, code) + message.encode()[:200] + b"\0"


class Source:
    """A file to send: bytes in memory (a rendered config) or an open descriptor read with pread
    (a loader or kernel, never read whole into memory)."""

    __slots__ = ("data", "fd", "size")

    def __init__(self, data: bytes | None = None, fd: int | None = None, size: int = 0) -> None:
        self.data, self.fd = data, fd
        self.size = len(data) if data is not None else size

    def read(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[offset:offset + length]
        assert self.fd is not None, "a closed source"
        return os.pread(self.fd, length, offset)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Session:
    __slots__ = ("sock", "peer", "source", "blksize", "block", "last_block", "packet", "sent_at",
                 "tries", "timeout", "chunk", "chunk_start")

    def __init__(self, sock: socket.socket, peer, source, blksize: int, timeout: float) -> None:
        self.sock, self.peer, self.source = sock, peer, source
        self.blksize, self.timeout = blksize, timeout
        self.block = 0          # the block last sent (0: the OACK)
        self.last_block = source.size // blksize + 1  # a short (possibly empty) block ends the file
        self.packet = b""
        self.sent_at = 0.0
        self.tries = 0
        self.chunk, self.chunk_start = b"", 0  # read ahead: one pread per CHUNK bytes, not per block

    def send(self, packet: bytes, now: float) -> None:
        self.packet, self.sent_at, self.tries = packet, now, 0
        self.sock.send(packet)

    def send_block(self, block: int, now: float) -> None:
        self.block = block
        offset = (block - 1) * self.blksize
        end = min(offset + self.blksize, self.source.size)  # exactly the size told, whatever the file does
        if not (self.chunk_start <= offset and end <= self.chunk_start + len(self.chunk)):
            want = min(max(CHUNK, self.blksize), self.source.size - offset)
            self.chunk_start, self.chunk = offset, self.source.read(offset, want)
            if len(self.chunk) < want:  # it shrank: the client must not take a short block for the end
                self.sock.send(error_packet(0, "file changed while it was sent"))
                raise OSError("the file shrank while it was sent")
        rel = offset - self.chunk_start
        packet = HEADER.pack(DATA, block & 0xFFFF) + self.chunk[rel:rel + end - offset]
        self.packet, self.sent_at, self.tries = packet, now, 0
        self.sock.send(packet)

    def close(self) -> None:
        self.sock.close()
        self.source.close()
