"""A node of the inventory: identity, cluster, profile, BMC and (optionally) inline facts."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .facts import Facts
from .types import Fqdn, Hostname, Name, Str, show

PROFILES = ("rhvh", "el")

_USER = re.compile(r"^[A-Za-z0-9_.@-]{1,32}\Z")
_PATH = re.compile(r"^[A-Za-z0-9_./@+-]{1,1024}\Z")


def _bmc_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if re.match(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\Z", value.lower()):
        return value.lower()
    raise ValueError(f"{show(value)} is neither an IP address nor a host name")


def _user(value: str) -> str:
    if not _USER.match(value):
        raise ValueError(f"{show(value)} may hold only A-Z a-z 0-9 _ . @ - (at most 32)")
    return value


def _path(value: str) -> str:
    if not _PATH.match(value):
        raise ValueError(f"{show(value)} is not a plain file path (A-Z a-z 0-9 _ . / @ + -)")
    return value


FilePath = Annotated[Str, AfterValidator(_path)]


def _system(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9_.:-]{1,128}$", value):
        raise ValueError(f"{show(value)} is not a Redfish system id (A-Z a-z 0-9 _ . : -)")
    return value


def _redfish_url(value: str) -> str:
    """https://HOST[:PORT] (http:// for a lab emulator): the Redfish service root is /redfish/v1."""
    url = urlsplit(value)
    if url.scheme not in ("https", "http") or not url.hostname or url.path.strip("/") or url.query or url.fragment:
        raise ValueError(f"{show(value)} is not a Redfish BMC URL such as https://bmc.example.com[:PORT]")
    try:
        url.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{show(value)} has a bad port") from None
    _bmc_address(url.hostname.strip("[]"))
    return f"{url.scheme}://{url.netloc.lower()}"


class Bmc(BaseModel):
    """`driver = "ipmi"`: `address` is a host or IP address, `port` its RMCP+ port. `driver =
    "redfish"`: `address` is the BMC's URL (https://host[:port]), `verify` a CA bundle file or
    false (never silently), `system` the Systems member to drive (default: the only one), `boot`
    "network" (PXE/HTTP boot, the default) or "vmedia" (a per-build ISO in the virtual CD)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["ipmi", "redfish"] = "ipmi"
    address: Str
    port: int = Field(default=623, ge=1, le=65535)
    username: Annotated[Str, AfterValidator(_user)]
    password_file: FilePath
    verify: bool | FilePath = True
    system: Annotated[Str, AfterValidator(_system)] | None = None
    # "vmedia": reinstall from a per-build ISO through the BMC's virtual media (Redfish), no DHCP
    boot: Literal["network", "vmedia"] = "network"

    @field_validator("address")
    @classmethod
    def _address(cls, value: str, info: ValidationInfo) -> str:
        return _redfish_url(value) if info.data.get("driver") == "redfish" else _bmc_address(value)

    @model_validator(mode="after")
    def _redfish_only(self) -> Bmc:
        if self.driver != "redfish" and (self.verify is not True or self.system is not None):
            raise ValueError("verify and system are Redfish settings (driver = \"redfish\")")
        if self.driver != "redfish" and self.boot == "vmedia":
            raise ValueError("boot = \"vmedia\" needs a Redfish BMC (driver = \"redfish\")")
        return self

    @property
    def label(self) -> str:
        """How messages name this BMC: host:port for IPMI, the URL for Redfish."""
        return self.address if self.driver == "redfish" else f"{self.address}:{self.port}"


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Hostname
    fqdn: Fqdn
    cluster: Name
    profile: Literal["rhvh", "el"]
    bmc: Bmc
    facts: Facts | None = None

    @property
    def short(self) -> str:
        return self.fqdn.split(".", 1)[0]
