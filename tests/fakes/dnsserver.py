"""A tiny authoritative DNS responder on loopback UDP, built on dnspython's message API:
answers A, AAAA, PTR and SRV from a dict; NXDOMAIN otherwise."""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class FakeDns:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def add(self, name: str, rdtype: str, value: str) -> None:
        self.records.setdefault((name.rstrip(".").lower() + ".", rdtype), []).append(value)

    def _serve(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except ConnectionRefusedError:
                continue  # an ICMP error for an earlier answer: keep answering
            except OSError:
                return  # closed
            try:
                answer = self._answer(data)
            except Exception:  # a packet that is no query (no question, a bad name): ignored, as a server does
                continue
            try:
                self.sock.sendto(answer, addr)
            except OSError:
                continue  # the client is gone: the next one still gets its answer

    def _answer(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.AA
        q = query.question[0]
        name, rdtype = q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype)
        values = self.records.get((name, rdtype), [])
        if values:
            resp.answer.append(dns.rrset.from_text_list(q.name, 60, dns.rdataclass.IN, q.rdtype, values))
        elif not any(n == name for n, _ in list(self.records)):
            resp.set_rcode(dns.rcode.NXDOMAIN)
        return resp.to_wire()

    def close(self) -> None:
        self._stop = True
        self.sock.close()
