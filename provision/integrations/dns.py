"""DNS preflight: the FQDN's A/AAAA records match the node's addresses and the PTR points back.
The protocol and a fake; the real checker uses dnspython."""

from __future__ import annotations

from typing import Protocol


class Dns(Protocol):
    def check(self, fqdn: str, addresses: list[str]) -> list[str]:
        """Problems found (empty when forward and reverse records agree)."""


class FakeDns:
    def __init__(self, problems: dict[str, list[str]] | None = None) -> None:
        self.problems = problems or {}

    def check(self, fqdn: str, addresses: list[str]) -> list[str]:
        return list(self.problems.get(fqdn, []))
