"""Validated scalar types.

Every value that ends up on a kickstart line, a kernel command line or a boot config is
checked here against a strict whitelist. Nothing is escaped: what could break a line is
rejected with an error naming the field.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, StringConstraints

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}\Z")
_FQDN_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})+\Z")
_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}\Z")
_IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}\Z")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_DISK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+@-]{0,199}\Z")
_SSH_KEY_RE = re.compile(
    r"^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com)"
    r" [A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._+-]{1,100})?\Z"
)
_CRYPT_RE = re.compile(r"^\$(1|5|6|y|2[abxy]?)\$[A-Za-z0-9./$=,]{8,200}\Z")


def show(value: object) -> str:
    """A short, single-line repr of an input value for error messages."""
    text = repr(value)
    return text if len(text) <= 64 else text[:60] + "...'"


def _text(value: object) -> object:
    if isinstance(value, str) and len(value) > 4096:
        raise ValueError(f"value is {len(value)} characters long; at most 4096 are accepted")
    return value


def _hostname(value: str) -> str:
    v = value.lower()
    if not _HOSTNAME_RE.match(v):
        raise ValueError(f"{show(value)} is not an RFC 1123 host name label (a-z, 0-9, '-', 1-63 chars)")
    return v


def _fqdn(value: str) -> str:
    v = value.lower().rstrip(".") if value.endswith(".") and value.count(".") > 1 else value.lower()
    if len(v) > 253 or not _FQDN_RE.match(v):
        raise ValueError(f"{show(value)} is not a fully qualified RFC 1123 domain name")
    return v


def normalize_mac(value: str) -> str:
    """Return the MAC in lower-case colon form, or raise ValueError."""
    v = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(v, str) or not _MAC_RE.match(v):
        raise ValueError(f"{show(value)} is not a MAC address (expected aa:bb:cc:dd:ee:ff)")
    digits = re.sub(r"[:-]", "", v)
    if int(digits[:2], 16) & 1:
        raise ValueError(f"{show(value)} is a multicast MAC address")
    if digits == "000000000000":
        raise ValueError(f"{show(value)} is the all-zero MAC address")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _ifname(value: str) -> str:
    if not _IFNAME_RE.match(value):
        raise ValueError(f"{show(value)} is not a Linux interface name (letter first, then A-Z a-z 0-9 _ . -, at most 15)")
    return value


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{show(value)} is not a valid name (A-Z a-z 0-9 _ . -, at most 63, alphanumeric first)")
    return value


def _disk_id(value: str) -> str:
    v = value.removeprefix("/dev/disk/by-id/")
    if not _DISK_ID_RE.match(v):
        raise ValueError(f"{show(value)} is not a /dev/disk/by-id name (A-Z a-z 0-9 _ . : + @ -)")
    return v


def _ssh_key(value: str) -> str:
    v = value.strip()
    if not _SSH_KEY_RE.match(v):
        raise ValueError("not an OpenSSH public key line ('TYPE BASE64 [comment]')")
    return v


def _crypt(value: str) -> str:
    v = value.strip()
    if not _CRYPT_RE.match(v):
        raise ValueError("not a crypt(3) password hash ($6$salt$hash)")
    return v


def _ip_interface(value: object) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if isinstance(value, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return value
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"{show(value)} is not an address with a prefix (e.g. 192.0.2.10/24)")
    try:
        return ipaddress.ip_interface(value.strip())
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _ip_address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError as exc:
        raise ValueError(str(exc)) from None


Str = Annotated[str, BeforeValidator(_text), StringConstraints(max_length=4096)]
Hostname = Annotated[str, BeforeValidator(_text), AfterValidator(_hostname)]
Fqdn = Annotated[str, BeforeValidator(_text), AfterValidator(_fqdn)]
Mac = Annotated[str, BeforeValidator(_text), AfterValidator(normalize_mac)]
IfName = Annotated[str, BeforeValidator(_text), AfterValidator(_ifname)]
Name = Annotated[str, BeforeValidator(_text), AfterValidator(_name)]
DiskId = Annotated[str, BeforeValidator(_text), AfterValidator(_disk_id)]
SshKey = Annotated[str, BeforeValidator(_text), AfterValidator(_ssh_key)]
CryptHash = Annotated[str, BeforeValidator(_text), AfterValidator(_crypt)]
IpInterface = Annotated[
    ipaddress.IPv4Interface | ipaddress.IPv6Interface, BeforeValidator(_text), BeforeValidator(_ip_interface)
]
IpAddress = Annotated[ipaddress.IPv4Address | ipaddress.IPv6Address, BeforeValidator(_text), BeforeValidator(_ip_address)]
