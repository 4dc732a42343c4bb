"""A minimal raw TFTP client (RFC 1350/2347/2348/2349) for protocol-level assertions."""

from __future__ import annotations

import socket
import struct

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6


def request(port: int, filename: str, opcode: int = RRQ, options: dict | None = None,
            host: str = "127.0.0.1", timeout: float = 5.0, source: str | None = None
            ) -> tuple[int, bytes, socket.socket, tuple]:
    """Send one RRQ/WRQ; return (opcode, payload, socket, server address) of the first reply."""
    pkt = struct.pack("!H", opcode) + filename.encode() + b"\0octet\0"
    for k, v in (options or {}).items():
        pkt += f"{k}\0{v}\0".encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if source is not None:
        sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.sendto(pkt, (host, port))
    data, addr = sock.recvfrom(65536)
    return struct.unpack("!H", data[:2])[0], data[2:], sock, addr


def error_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0]


def parse_oack(payload: bytes) -> dict:
    parts = payload.split(b"\0")[:-1]
    return {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts), 2)}


def send_raw(port: int, data: bytes, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, (host, port))
