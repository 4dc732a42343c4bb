"""A node of the inventory: identity, cluster, profile, BMC and (optionally) inline facts."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .facts import Facts
from .types import Fqdn, Hostname, Name, Str, show

PROFILES = ("rhvh", "el")

_USER = re.compile(r"^[A-Za-z0-9_.@-]{1,32}$")
_PATH = re.compile(r"^[A-Za-z0-9_./@+-]{1,1024}$")


def _bmc_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if re.match(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$", value.lower()):
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


class Bmc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: Annotated[Str, AfterValidator(_bmc_address)]
    port: int = Field(default=623, ge=1, le=65535)
    username: Annotated[Str, AfterValidator(_user)]
    password_file: FilePath


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
