"""A VLAN access port in user space, for hosts whose kernel has no 802.1Q support (no 8021q
module, no bridge VLAN filtering), as the machines the VM test runs on:

    python vlan.py TRUNK VID TAP ADDRESS/PREFIX

Frames tagged VID that reach TRUNK (one end of a veth pair whose other end is a bridge port) are
written untagged to the tap device TAP, which holds ADDRESS; frames the host sends out of TAP go
back to TRUNK tagged VID. So the host has an address on the VLAN as `ip link add ... type vlan`
would give it. The kernel moves a received tag into the packet's metadata before a packet socket
sees it: it comes in the PACKET_AUXDATA control message, which also says when the sender left the
TCP/UDP checksum to the NIC (a virtio guest does): the checksum is completed here, or the host
would drop the packet."""

from __future__ import annotations

import fcntl
import os
import selectors
import socket
import struct
import subprocess
import sys

ETH_P_ALL, SOL_PACKET, PACKET_AUXDATA = 0x0003, 263, 8
TP_STATUS_CSUMNOTREADY, TP_STATUS_VLAN_VALID = 1 << 3, 1 << 4
AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def untagged(frame: bytes, ancdata, vid: int) -> bytes | None:
    """`frame` without its tag if it is tagged `vid` (in the metadata or inline), else None."""
    status = 0
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= AUXDATA.size:
            status, *_, tci, _tpid = AUXDATA.unpack_from(data)
            if status & TP_STATUS_VLAN_VALID:
                if tci & 0xFFF != vid:
                    return None
                return with_checksum(frame) if status & TP_STATUS_CSUMNOTREADY else frame
    if frame[12:14] == b"\x81\x00" and struct.unpack_from("!H", frame, 14)[0] & 0xFFF == vid:
        inner = frame[:12] + frame[16:]
        return with_checksum(inner) if status & TP_STATUS_CSUMNOTREADY else inner
    return None


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def with_checksum(frame: bytes) -> bytes:
    """The Ethernet frame with its IPv4 TCP or UDP checksum computed in full."""
    if frame[12:14] != b"\x08\x00":
        return frame
    ip = 14
    ihl, proto = (frame[ip] & 0x0F) * 4, frame[ip + 9]
    total = struct.unpack_from("!H", frame, ip + 2)[0]
    offset = {6: 16, 17: 6}.get(proto)
    if offset is None:
        return frame
    seg = bytearray(frame[ip + ihl:ip + total])
    seg[offset:offset + 2] = b"\0\0"
    pseudo = frame[ip + 12:ip + 20] + struct.pack("!BBH", 0, proto, len(seg))
    csum = ~_sum16(pseudo + bytes(seg)) & 0xFFFF
    seg[offset:offset + 2] = struct.pack("!H", csum or (0xFFFF if proto == 17 else 0))
    return frame[:ip + ihl] + bytes(seg) + frame[ip + total:]


def main() -> None:
    trunk, vid, tap_name, address = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    sock.bind((trunk, ETH_P_ALL))
    tap = open_tap(tap_name)
    subprocess.run(["ip", "addr", "add", address, "dev", tap_name], check=True)
    subprocess.run(["ip", "link", "set", tap_name, "up"], check=True)
    tag = b"\x81\x00" + struct.pack("!H", vid)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "trunk")
    sel.register(tap, selectors.EVENT_READ, "tap")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "trunk":
                frame, ancdata, _flags, addr = sock.recvmsg(65535, socket.CMSG_SPACE(AUXDATA.size))
                if addr[2] == socket.PACKET_OUTGOING:
                    continue  # what we sent ourselves
                inner = untagged(frame, ancdata, vid)
                if inner is not None:
                    os.write(tap, inner)
            else:
                frame = os.read(tap, 65535)
                sock.send(frame[:12] + tag + frame[12:])


if __name__ == "__main__":
    main()
