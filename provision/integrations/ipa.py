"""FreeIPA: the protocol the workflow uses, and a fake. The real client uses python-freeipa."""

from __future__ import annotations

import secrets
from typing import Protocol

from . import IntegrationError
from .fakestate import FakeState


class IpaError(IntegrationError):
    def __init__(self, message: str) -> None:
        super().__init__("ipa", message)


# What a host's IPA identity is besides its name: direct memberships and who manages it (host_show's
# memberof_hostgroup/netgroup/hbacrule/sudorule and managedby_host), restored after host_add.
MEMBERSHIP = ("hostgroups", "netgroups", "hbacrules", "sudorules", "managedby")


class Ipa(Protocol):
    def validate(self) -> None: ...
    def host_info(self, fqdn: str) -> dict | None:
        """{'hostgroups', 'netgroups', 'hbacrules', 'sudorules', 'managedby': [...]} (direct
        memberships; managedby without the host itself), or None when IPA does not know the host."""
    def host_del(self, fqdn: str) -> None: ...
    def dns_plan(self, fqdn: str, ips: list[str]) -> dict:
        """{'forward': IPA manages the host's zone, 'reverse': {ip: IPA manages its reverse zone}}:
        what host_add will do with DNS, found without writing anything."""
    def host_add(self, fqdn: str, ip: str | None, ip6: str | None = None) -> str:
        """Create the host with a random one-time password (and its A/AAAA records when IPA manages
        DNS: host_del --updatedns removed both); return the OTP."""
    def restore(self, fqdn: str, membership: dict) -> None:
        """Put the host back into what host_info recorded."""


class FakeIpa:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def validate(self) -> None:
        pass

    def host_info(self, fqdn: str) -> dict | None:
        with self.state.edit() as d:
            self.state.record(d, "host_show", fqdn=fqdn)
            h = d.get("hosts", {}).get(fqdn)
            return {k: list(h.get(k, [])) for k in MEMBERSHIP} if h else None

    def host_del(self, fqdn: str) -> None:
        with self.state.edit() as d:
            self.state.record(d, "host_del", fqdn=fqdn)
            if d.get("hosts", {}).pop(fqdn, None) is None:
                raise IpaError(f"{fqdn}: host not found (4001)")

    def dns_plan(self, fqdn: str, ips: list[str]) -> dict:
        with self.state.edit() as d:
            self.state.record(d, "dns_plan", fqdn=fqdn)
            reverse = d.get("reverse_zones", True)
        return {"forward": True, "reverse": {ip: reverse for ip in ips}}

    def host_add(self, fqdn: str, ip: str | None, ip6: str | None = None) -> str:
        otp = secrets.token_urlsafe(12)
        with self.state.edit() as d:
            if fqdn in d.get("hosts", {}):
                raise IpaError(f'host with name "{fqdn}" already exists (4002)')
            d.setdefault("hosts", {})[fqdn] = {"otp": otp}
            self.state.record(d, "host_add", fqdn=fqdn, ip=ip, ip6=ip6, otp=otp)
        return otp

    def restore(self, fqdn: str, membership: dict) -> None:
        with self.state.edit() as d:
            self.state.record(d, "restore", fqdn=fqdn, membership=membership)
            h = d["hosts"][fqdn]
            for k in MEMBERSHIP:
                h[k] = sorted(set(h.get(k, [])) | set(membership.get(k, [])))
