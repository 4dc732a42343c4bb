"""Satellite (Foreman API v2): the protocol the workflow uses, and a fake."""

from __future__ import annotations

from typing import Protocol

from . import IntegrationError
from .fakestate import FakeState


class SatelliteError(IntegrationError):
    def __init__(self, message: str) -> None:
        super().__init__("satellite", message)


class Satellite(Protocol):
    def validate(self) -> None: ...
    def host_info(self, fqdn: str) -> dict | None:
        """Organization, location, host group, lifecycle environment, content view (ids and names)."""
    def delete_host(self, fqdn: str) -> bool:
        """Delete the host (and its content host); False when it did not exist."""
    def registration_command(self, fqdn: str, placement: dict | None = None) -> str: ...
    def restore_content(self, fqdn: str, placement: dict) -> bool:
        """Content view and lifecycle environment back as recorded; False if the host is not registered."""
    def preflight(self, fqdn: str) -> str:
        """Read only: can the host be registered back where it is (its host group, the organization
        and location, the activation keys)? What was found; SatelliteError naming what is missing."""


class FakeSatellite:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def validate(self) -> None:
        pass

    def host_info(self, fqdn: str) -> dict | None:
        with self.state.edit() as d:
            self.state.record(d, "host_info", fqdn=fqdn)
            h = d.get("hosts", {}).get(fqdn)
            return dict(h) if isinstance(h, dict) else ({} if h else None)

    def delete_host(self, fqdn: str) -> bool:
        with self.state.edit() as d:
            self.state.record(d, "delete_host", fqdn=fqdn)
            return d.get("hosts", {}).pop(fqdn, None) is not None

    def registration_command(self, fqdn: str, placement: dict | None = None) -> str:
        with self.state.edit() as d:
            self.state.record(d, "registration_command", fqdn=fqdn, placement=placement)
            return "curl -sS 'https://satellite.example.com/register?token=fake' | bash"

    def preflight(self, fqdn: str) -> str:
        with self.state.edit() as d:
            self.state.record(d, "preflight", fqdn=fqdn)
            missing = d.get("missing_keys")
        if missing:
            raise SatelliteError(f"activation key(s) {', '.join(missing)} not found in the organization")
        return "host group, organization and activation keys found"

    def restore_content(self, fqdn: str, placement: dict) -> bool:
        with self.state.edit() as d:
            self.state.record(d, "restore_content", fqdn=fqdn, placement=placement)
            return True
