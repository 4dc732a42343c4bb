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
    def delete_host(self, fqdn: str) -> bool:
        """Delete the host (and its content host); False when it did not exist."""
    def registration_command(self, fqdn: str) -> str: ...


class FakeSatellite:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def validate(self) -> None:
        pass

    def delete_host(self, fqdn: str) -> bool:
        with self.state.edit() as d:
            self.state.record(d, "delete_host", fqdn=fqdn)
            return d.get("hosts", {}).pop(fqdn, None) is not None

    def registration_command(self, fqdn: str) -> str:
        with self.state.edit() as d:
            self.state.record(d, "registration_command", fqdn=fqdn)
            return "curl -sS 'https://satellite.example.com/register?token=fake' | bash"
