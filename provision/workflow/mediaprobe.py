"""Before `retire`: the media a node's profile boots is imported and served, fetched the way the node
will fetch it. A rebuild used to retire a host with no media imported and no loaders in the TFTP
root, then power-cycle it into a boot that could only fail.

Checked, each by a request to our own server (nothing is transferred whole):
- network boot: the loaders of the node's firmware over TFTP (UEFI `shimx64.efi`, `grubx64.efi`;
  BIOS `pxelinux.0`, `ldlinux.c32`), and the kernel and initrd over TFTP where the loader fetches
  them so (pxelinux; GRUB with `grub_fetch = "tftp"`) — a read request with the tsize option (RFC
  2349), ended by an ERROR once the server answers;
- virtual-media boot: what the build's ISO is made of (vmedia.missing_inputs);
- over HTTP (HEAD): the kernel and initrd (iPXE, GRUB over HTTP), and what the installer fetches:
  stage 2 (`images/install.img`) and the live image for oVirt Node / RHVH, the tree (`.treeinfo`)
  for Enterprise Linux."""

from __future__ import annotations

import socket
import struct

import requests

from ..config import Config
from ..domain import Node
from ..errors import ProvisionError
from ..integrations.http import cause
from ..render.context import media_name, media_urls
from ..vmedia import missing_inputs

LOADERS = {True: ("shimx64.efi", "grubx64.efi"), False: ("pxelinux.0", "ldlinux.c32")}


def tftp_addr(cfg: Config) -> tuple[str, int]:
    host, _, port = cfg.server.tftp_bind.rpartition(":")
    host = host.strip("[]")
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host), int(port)


def tftp_size(host: str, port: int, name: str, timeout: float = 5.0) -> int | None:
    """Ask for `name` with tsize=0 and end the transfer at the first answer: its size (None when the
    server sent data without an OACK). Raises ProvisionError with the server's words or silence."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        request = b"\x00\x01" + name.encode() + b"\x00octet\x00tsize\x000\x00"
        for _ in range(2):
            sock.sendto(request, (host, port))
            try:
                data, peer = sock.recvfrom(4096)
                break
            except TimeoutError:
                continue
        else:
            raise ProvisionError(f"TFTP {host}:{port} {name}: no answer within {timeout:.0f} s")
        (op,) = struct.unpack("!H", data[:2])
        if op == 5:
            said = data[4:].split(b"\x00", 1)[0].decode(errors="replace")
            raise ProvisionError(f"TFTP {host}:{port} {name}: {said}")
        sock.sendto(b"\x00\x05\x00\x00provision probe: done\x00", peer)  # end it: the file answers
        if op == 6:
            words = data[2:].split(b"\x00")
            options = dict(zip(words[::2], words[1::2], strict=False))
            return int(options[b"tsize"]) if options.get(b"tsize", b"").isdigit() else None
        if op == 3:
            return None
        raise ProvisionError(f"TFTP {host}:{port} {name}: unexpected answer (opcode {op})")


def probe_media(cfg: Config, node: Node, liveimgs: dict[str, str], timeout: float = 5.0) -> str:
    """What was checked; raises ProvisionError naming every file the node would not get."""
    facts, name = node.facts, media_name(node, cfg)
    assert facts is not None, "probe_media: a node with facts"
    uefi, vmedia = facts.firmware == "uefi", node.bmc.boot == "vmedia"
    urls = media_urls(node, cfg, liveimgs)
    problems, tftp_files = [], []
    if vmedia:
        problems += missing_inputs(cfg, node)
    else:
        tftp_files = list(LOADERS[uefi])
        if not uefi or cfg.defaults.grub_fetch == "tftp":
            tftp_files += [urls["kernel"].lstrip("/"), urls["initrd"].lstrip("/")]
        host, port = tftp_addr(cfg)
        for f in tftp_files:
            try:  # a TFTP server answers a read request at once: 2 s per try is generous
                tftp_size(host, port, f, min(timeout, 2.0))
            except ProvisionError as exc:
                problems.append(str(exc))
                if "no answer" in str(exc):  # no TFTP server there: the other files cannot answer either
                    break
    http = [urls["kernel_url"], urls["initrd_url"]]
    http += [f"{urls['stage2_url']}/images/install.img", urls["liveimg_url"]] if node.profile == "rhvh" \
        else [f"{urls['repo_url']}/.treeinfo"]
    for url in http:
        try:
            resp = requests.head(url, timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            problems.append(f"HEAD {url}: no answer ({cause(exc)})")
            break  # the server is not there: the other URLs cannot answer either
        if resp.status_code != 200:
            problems.append(f"HEAD {url}: HTTP {resp.status_code}")
    if problems:
        raise ProvisionError(f"node {node.name}: media {name!r} is not served as the node will fetch it: "
                             + "; ".join(problems) + " (provision media import; loaders in [paths] bootfiles)")
    over = f"{len(tftp_files)} over TFTP and {len(http)} over HTTP" if tftp_files else f"{len(http)} over HTTP"
    return f"media {name}: {over}, fetched as the node will" + (" (virtual-media ISO inputs present)" if vmedia else "")
