"""`provision dhcp export`: DHCP configuration for the nodes' boot NICs (see provision/dhcp.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from .. import dhcp as dhcp_mod
from ..errors import InputError
from .common import svc


@click.group()
def dhcp() -> None:
    """DHCP configuration that sends the nodes to this server."""


@dhcp.command("export")
@click.option("--format", "fmt", required=True, help="dnsmasq | kea | isc")
@click.option("--proxy", is_flag=True, help="proxy DHCP beside someone else's DHCP server (dnsmasq only)")
@click.option("--next-server", help="IPv4 address of this TFTP server as nodes reach it "
                                    "(default: from [server] tftp_bind or public_url)")
@click.option("--ipxe/--no-ipxe", default=True, show_default=True,
              help="iPXE clients get the iPXE script URL; --no-ipxe: the loader of their firmware "
                   "(pxelinux.0 or shimx64.efi), like any PXE client")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="write to FILE (whole or not at all) "
                                                                       "instead of standard output")
@click.pass_context
def export(ctx: click.Context, fmt: str, proxy: bool, next_server: str | None, ipxe: bool,
           output: str | None) -> None:
    """Per-MAC reservations (IP, host name) for every node's boot NIC, and the boot file by client
    architecture: BIOS -> pxelinux.0, UEFI -> shimx64.efi, UEFI HTTP boot and iPXE -> HTTP."""
    if fmt not in dhcp_mod.FORMATS:  # before the store is opened
        raise InputError(f"--format: {fmt!r} is not one of {', '.join(dhcp_mod.FORMATS)}")
    s = svc(ctx)
    text = dhcp_mod.render(dhcp_mod.plan(s.cfg, s.store, next_server, ipxe), fmt, proxy)
    if output is None:
        click.echo(text, nl=False)
        return
    path = Path(output)
    if not path.parent.is_dir():
        raise InputError(f"--output: directory {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # a daemon's config: no secrets in it
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
