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


class DnsChecker:
    """Forward and reverse lookups with dnspython, against configured name servers (or the
    system's), one query each, no caching: what the installer and the engine will see."""

    def __init__(self, nameservers: list[str] | None = None, port: int = 53, timeout: float = 5.0) -> None:
        import dns.resolver

        if nameservers:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = list(nameservers)
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.port = port
        self.resolver.lifetime = self.resolver.timeout = timeout

    def _answers(self, name: str, rdtype: str) -> list[str] | None:
        """Record texts; [] when the name has none of that type; None when DNS did not answer."""
        import dns.exception
        import dns.resolver

        try:
            return [r.to_text() for r in self.resolver.resolve(name, rdtype, raise_on_no_answer=False) or []]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout):
            return None

    def check(self, fqdn: str, addresses: list[str]) -> list[str]:
        import ipaddress

        import dns.reversename

        problems = []
        want = {ipaddress.ip_address(a) for a in addresses}
        have = set()
        for rdtype in ("A", "AAAA"):
            got = self._answers(fqdn, rdtype)
            if got is None:
                return [f"no answer from DNS for {fqdn} {rdtype}"]
            have |= {ipaddress.ip_address(a) for a in got}
        if not have:
            problems.append(f"{fqdn} has no A/AAAA record")
        elif have != want:
            problems.append(f"{fqdn} resolves to {', '.join(sorted(map(str, have)))}; expected "
                            f"{', '.join(sorted(map(str, want)))}")
        for addr in sorted(want, key=str):
            ptr = self._answers(dns.reversename.from_address(str(addr)).to_text(), "PTR")
            if ptr is None:
                problems.append(f"no answer from DNS for the PTR of {addr}")
            elif not ptr:
                problems.append(f"{addr} has no PTR record")
            elif fqdn.rstrip(".") + "." not in ptr:
                problems.append(f"PTR of {addr} is {', '.join(ptr)}; expected {fqdn}.")
        return problems

    def ipa_servers(self, domain: str) -> list[str]:
        """IPA servers by SRV (_ldap._tcp.<domain>), best first."""
        import dns.resolver

        try:
            answer = self.resolver.resolve(f"_ldap._tcp.{domain}", "SRV")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return []
        records = sorted(answer, key=lambda r: (r.priority, -r.weight))
        return [r.target.to_text().rstrip(".") for r in records]
