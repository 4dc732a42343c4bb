"""`provision dhcp export`: DHCP configuration that sends every node's boot NIC to provision.

For each node with facts: a reservation of its management IPv4 address and host name for the MAC
its boot configs are armed for (workflow/bootprobe.boot_mac), in a subnet with the management
network's gateway and the node's DNS servers. For every client, the boot file by what it is
(DHCP option 93, client architecture, RFC 4578; option 77, user class):
- iPXE (user class "iPXE"), whatever the firmware: `<public_url>/boot/ipxe?mac=${net0/mac}` (iPXE
  expands the setting in the file name);
- UEFI HTTP boot (arch 16): `<public_url>/boot/shimx64.efi`, with vendor class "HTTPClient";
- UEFI PXE (arch 7 or 9): `shimx64.efi` from next-server over TFTP;
- BIOS PXE (arch 0): `pxelinux.0` from next-server over TFTP.
Three formats, each accepted by its daemon's own checker: dnsmasq (`dnsmasq --test`), Kea
(`kea-dhcp4 -t`), ISC dhcpd (`dhcpd -t -cf`). `--proxy` (dnsmasq only): proxy DHCP beside a DHCP
server that belongs to someone else; it hands out no addresses, only boot information, and only
to the nodes' MACs. `--no-ipxe` leaves out the iPXE rule: iPXE clients (NIC ROMs that are iPXE)
then get the loader of their firmware like any other PXE client, and boot pxelinux or GRUB."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import __version__
from .config import Config
from .errors import InputError
from .store import Store
from .workflow.bootprobe import boot_mac

FORMATS = ("dnsmasq", "kea", "isc")
UEFI_LOADER, BIOS_LOADER = "shimx64.efi", "pxelinux.0"
ARCH_BIOS, ARCH_UEFI, ARCH_HTTP = (0,), (7, 9), (16,)


@dataclass(frozen=True)
class Host:
    name: str
    fqdn: str
    mac: str
    ip: ipaddress.IPv4Address | None
    subnet: ipaddress.IPv4Network | None
    note: str = ""  # said in a comment beside the host


@dataclass
class Subnet:
    network: ipaddress.IPv4Network
    gateway: str | None = None
    dns: list[str] = field(default_factory=list)


@dataclass
class Export:
    next_server: str
    http: str  # public_url without a trailing slash
    tftp_port: int
    hosts: list[Host]
    subnets: list[Subnet]
    skipped: list[str]  # "name: why", for a comment
    ipxe: bool = True  # iPXE clients get the iPXE script URL (False: the loader of their firmware)

    @property
    def ipxe_url(self) -> str:
        return f"{self.http}/boot/ipxe?mac=${{net0/mac}}"

    @property
    def http_boot_url(self) -> str:
        return f"{self.http}/boot/{UEFI_LOADER}"


def plan(cfg: Config, store: Store, next_server: str | None = None, ipxe: bool = True) -> Export:
    """What the export says, from the inventory and its facts (reads only)."""
    server = cfg.server
    http = server.public_url.rstrip("/")
    tftp_host, _, tftp_port = server.tftp_bind.rpartition(":")
    if next_server is None:
        next_server = _default_next_server(tftp_host.strip("[]"), urlsplit(http).hostname or "")
    try:
        if ipaddress.ip_address(next_server).version != 4:
            raise ValueError
    except ValueError:
        raise InputError(f"--next-server: {next_server!r} is not an IPv4 address (PXE firmware's TFTP "
                         "server is an IPv4 address)") from None
    hosts: list[Host] = []
    subnets: dict = {}  # network -> Subnet
    skipped: list[str] = []
    for rec in store.list_nodes():
        node = rec.node
        if node.facts is None:
            skipped.append(f"{node.name}: no facts")
            continue
        mgmt = node.facts.management
        vlan = node.facts.vlan(mgmt.interface)
        note = (f"management is on VLAN {vlan.id}: the firmware asks untagged, so serve this MAC on the "
                "native VLAN of its port" if vlan else "")
        ip: ipaddress.IPv4Address | None = None
        net: ipaddress.IPv4Network | None = None
        if isinstance(mgmt.address, ipaddress.IPv4Interface):  # `address` is IPv4, `address6` IPv6
            ip, net = mgmt.address.ip, mgmt.address.network
            sub = subnets.setdefault(net, Subnet(net))
            if sub.gateway is None and mgmt.gateway is not None:
                sub.gateway = str(mgmt.gateway)
            for d in node.facts.dns_servers:
                if d.version == 4 and str(d) not in sub.dns:
                    sub.dns.append(str(d))
        else:
            note = (note + "; " if note else "") + "no IPv4 management address: boot options only"
        hosts.append(Host(node.name, node.fqdn, boot_mac(node), ip, net, note))
    return Export(next_server, http, int(tftp_port), hosts, sorted(subnets.values(), key=lambda s: s.network),
                  skipped, ipxe)


def _default_next_server(tftp_host: str, url_host: str) -> str:
    for candidate in (tftp_host, url_host):
        try:
            addr = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if addr.version == 4 and not (addr.is_unspecified or addr.is_loopback):
            return str(addr)
    raise InputError("--next-server: neither [server] tftp_bind nor public_url names an IPv4 address that "
                     "nodes can reach; give the address of this server, e.g. --next-server 192.0.2.10")


def render(export: Export, fmt: str, proxy: bool = False) -> str:
    if fmt not in FORMATS:
        raise InputError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if proxy and fmt != "dnsmasq":
        raise InputError(f"--proxy: only dnsmasq can answer as a proxy DHCP server beside another DHCP "
                         f"server; {'Kea' if fmt == 'kea' else 'ISC dhcpd'} cannot (use --format dnsmasq)")
    if fmt == "kea":
        return kea(export)
    return dnsmasq(export, proxy) if fmt == "dnsmasq" else isc(export)


def _header(export: Export, comment: str) -> list[str]:
    ipxe = f"iPXE -> {export.ipxe_url}" if export.ipxe else "iPXE clients as their firmware (--no-ipxe)"
    lines = [f"Generated by provision {__version__}: {len(export.hosts)} nodes.",
             f"Boot files: {ipxe}; UEFI HTTP boot -> {export.http_boot_url};",
             f"UEFI PXE -> {UEFI_LOADER}, BIOS PXE -> {BIOS_LOADER}, over TFTP from {export.next_server}."]
    if export.tftp_port != 69:
        lines.append(f"PXE firmware uses TFTP port 69, provision's tftp_bind is port {export.tftp_port}: bind 69 "
                     "or forward it.")
    lines += [f"Not exported: {s}" for s in export.skipped]
    return [f"{comment} {line}" for line in lines]


def dnsmasq(export: Export, proxy: bool = False) -> str:
    ns = export.next_server
    out = _header(export, "#") + [
        *(["dhcp-userclass=set:ipxe,iPXE"] if export.ipxe else []),
        *(f"dhcp-match=set:bios,option:client-arch,{a}" for a in ARCH_BIOS),
        *(f"dhcp-match=set:uefi,option:client-arch,{a}" for a in ARCH_UEFI),
        *(f"dhcp-match=set:httpboot,option:client-arch,{a}" for a in ARCH_HTTP),
    ]
    if proxy:  # no addresses, and answers only the nodes' MACs (tag provision)
        out += [f"dhcp-range={s.network.network_address},proxy,{s.network.netmask}" for s in export.subnets]
        out += [f"dhcp-host={h.mac},set:provision" + (f"  # {h.note}" if h.note else "") for h in export.hosts]
        out += (["dhcp-boot=tag:provision,tag:ipxe," + export.ipxe_url] if export.ipxe else []) + [
                f'pxe-service=tag:provision,tag:!ipxe,x86PC,"provision",{BIOS_LOADER.removesuffix(".0")},{ns}',
                f'pxe-service=tag:provision,tag:!ipxe,BC_EFI,"provision",{UEFI_LOADER},{ns}',
                f'pxe-service=tag:provision,tag:!ipxe,x86-64_EFI,"provision",{UEFI_LOADER},{ns}']
        return "\n".join(out) + "\n"
    out += ([f"dhcp-boot=tag:ipxe,{export.ipxe_url}"] if export.ipxe else []) + [
            "dhcp-option-force=tag:httpboot,tag:!ipxe,option:vendor-class,HTTPClient",
            f"dhcp-boot=tag:httpboot,tag:!ipxe,{export.http_boot_url}",
            f"dhcp-boot=tag:uefi,tag:!ipxe,{UEFI_LOADER},,{ns}",
            f"dhcp-boot=tag:bios,tag:!ipxe,{BIOS_LOADER},,{ns}"]
    for i, s in enumerate(export.subnets):
        tag = f"net{i}"  # static: only the reserved MACs get an address in it
        out.append(f"dhcp-range=set:{tag},{s.network.network_address},static,{s.network.netmask}")
        if s.gateway:
            out.append(f"dhcp-option=tag:{tag},option:router,{s.gateway}")
        if s.dns:
            out.append(f"dhcp-option=tag:{tag},option:dns-server,{','.join(s.dns)}")
    for h in export.hosts:
        if h.note:
            out.append(f"# {h.name}: {h.note}")
        out.append(f"dhcp-host={h.mac}," + (f"{h.ip}," if h.ip else "") + h.name)
    return "\n".join(out) + "\n"


def kea(export: Export) -> str:
    """Kea DHCPv4 (JSON; Kea ARM, "Client Classification" and "Host Reservations")."""
    arch = "option[93].hex"
    not_ipxe = "not member('ipxe') and " if export.ipxe else ""
    classes = [
        {"name": "ipxe", "test": "substring(option[77].hex,0,4) == 'iPXE'", "boot-file-name": export.ipxe_url},
    ][:1 if export.ipxe else 0] + [
        {"name": "httpboot", "test": f"{not_ipxe}{arch} == 0x0010", "boot-file-name": export.http_boot_url,
         "option-data": [{"name": "vendor-class-identifier", "data": "HTTPClient"}]},
        {"name": "uefi", "test": f"{not_ipxe}({arch} == 0x0007 or {arch} == 0x0009)",
         "next-server": export.next_server, "boot-file-name": UEFI_LOADER},
        {"name": "bios", "test": f"{not_ipxe}{arch} == 0x0000", "next-server": export.next_server,
         "boot-file-name": BIOS_LOADER},
    ]
    subnets = []
    for i, s in enumerate(export.subnets, start=1):
        options = ([{"name": "routers", "data": s.gateway}] if s.gateway else []) + \
            ([{"name": "domain-name-servers", "data": ", ".join(s.dns)}] if s.dns else [])
        subnets.append({"id": i, "subnet": str(s.network), "option-data": options,
                        "reservations": [{"hw-address": h.mac, "ip-address": str(h.ip), "hostname": h.name}
                                         for h in export.hosts if h.subnet == s.network]})
    config = {"Dhcp4": {
        "interfaces-config": {"interfaces": ["*"]},
        "lease-database": {"type": "memfile", "lfc-interval": 3600},
        "valid-lifetime": 3600,
        "client-classes": classes,
        "subnet4": subnets,
    }}
    comments = _header(export, "//") + \
        [f"// {h.name}: {h.note}" for h in export.hosts if h.note]
    return "\n".join(comments) + "\n" + json.dumps(config, indent=2) + "\n"


def isc(export: Export) -> str:
    """ISC dhcpd 4.x (dhcpd.conf(5), dhcp-options(5))."""
    ns = export.next_server
    out = _header(export, "#") + [
        "option arch code 93 = unsigned integer 16;",
        *(['if exists user-class and option user-class = "iPXE" {', f'  filename "{export.ipxe_url}";',
            "} elsif option arch = 16 {"] if export.ipxe else ["if option arch = 16 {"]),
        '  option vendor-class-identifier "HTTPClient";',
        f'  filename "{export.http_boot_url}";',
        "} elsif option arch = 7 or option arch = 9 {",
        f"  next-server {ns};",
        f'  filename "{UEFI_LOADER}";',
        "} elsif option arch = 0 {",
        f"  next-server {ns};",
        f'  filename "{BIOS_LOADER}";',
        "}",
    ]
    for s in export.subnets:
        out.append(f"subnet {s.network.network_address} netmask {s.network.netmask} {{")
        if s.gateway:
            out.append(f"  option routers {s.gateway};")
        if s.dns:
            out.append(f"  option domain-name-servers {', '.join(s.dns)};")
        out.append("}")
    for h in export.hosts:
        if h.note:
            out.append(f"# {h.name}: {h.note}")
        out.append(f"host {h.name} {{")
        out.append(f"  hardware ethernet {h.mac};")
        if h.ip:
            out.append(f"  fixed-address {h.ip};")
        out.append(f'  option host-name "{h.name}";')
        out.append("}")
    return "\n".join(out) + "\n"
