"""FreeIPA: the protocol the workflow uses, and a fake. The real client uses python-freeipa."""

from __future__ import annotations

import secrets
from typing import Protocol

from . import IntegrationError
from .fakestate import FakeState


class IpaError(IntegrationError):
    def __init__(self, message: str) -> None:
        super().__init__("ipa", message)


class Ipa(Protocol):
    def validate(self) -> None: ...
    def host_info(self, fqdn: str) -> dict | None:
        """{'hostgroups': [...]} or None when IPA does not know the host."""
    def host_del(self, fqdn: str) -> None: ...
    def host_add(self, fqdn: str, ip: str | None) -> str:
        """Create the host with a random one-time password; return the OTP."""
    def add_hostgroups(self, fqdn: str, groups: list[str]) -> None: ...


class FakeIpa:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def validate(self) -> None:
        pass

    def host_info(self, fqdn: str) -> dict | None:
        with self.state.edit() as d:
            self.state.record(d, "host_show", fqdn=fqdn)
            h = d.get("hosts", {}).get(fqdn)
            return {"hostgroups": list(h.get("hostgroups", []))} if h else None

    def host_del(self, fqdn: str) -> None:
        with self.state.edit() as d:
            self.state.record(d, "host_del", fqdn=fqdn)
            if d.get("hosts", {}).pop(fqdn, None) is None:
                raise IpaError(f"{fqdn}: host not found (4001)")

    def host_add(self, fqdn: str, ip: str | None) -> str:
        otp = secrets.token_urlsafe(12)
        with self.state.edit() as d:
            if fqdn in d.get("hosts", {}):
                raise IpaError(f'host with name "{fqdn}" already exists (4002)')
            d.setdefault("hosts", {})[fqdn] = {"hostgroups": [], "otp": otp}
            self.state.record(d, "host_add", fqdn=fqdn, ip=ip, otp=otp)
        return otp

    def add_hostgroups(self, fqdn: str, groups: list[str]) -> None:
        with self.state.edit() as d:
            self.state.record(d, "hostgroup_add_member", fqdn=fqdn, groups=groups)
            d["hosts"][fqdn]["hostgroups"] = sorted(set(d["hosts"][fqdn]["hostgroups"]) | set(groups))
