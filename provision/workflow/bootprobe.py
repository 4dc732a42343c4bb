"""Before a node is power-cycled, fetch its boot config from our own server the way the node will
(HTTP `/boot/...` and TFTP, by its boot MAC) and check it is the install config. A server that is
down, a TFTP port that is firewalled or a config still on local boot then fails the netboot step
before anything happens to the machine, instead of a node that boots its old disk or nothing."""

from __future__ import annotations

import io
import logging
import time

import requests
import tftpy

from ..config import Config
from ..domain import Node
from ..errors import ProvisionError

logging.getLogger("tftpy").setLevel(logging.CRITICAL)  # the client logs every packet otherwise


def _is_install(text: str, uefi: bool) -> bool:
    marker = "set default=install" if uefi else "DEFAULT install"
    return marker in text and "inst.ks=" in text


class BootProbe:
    """`wait`: how long the served config may take to switch to install (the TFTP cache of a
    `serve` in another process refreshes on its own poll), checked again every `interval`."""

    def __init__(self, cfg: Config, timeout: float = 5.0, wait: float = 10.0, interval: float = 0.25) -> None:
        self.cfg, self.timeout, self.wait, self.interval = cfg, timeout, wait, interval

    def _tftp_addr(self) -> tuple[str, int]:
        from .mediaprobe import tftp_addr
        return tftp_addr(self.cfg)

    def media(self, node: Node, liveimgs: dict[str, str]) -> str:
        """Before retire: the media the node boots, served as it will fetch it (mediaprobe.py)."""
        from .mediaprobe import probe_media
        return probe_media(self.cfg, node, liveimgs, timeout=self.timeout)

    def __call__(self, node: Node) -> str:
        """Raise ProvisionError naming what the node would not get; return what was checked."""
        deadline = time.monotonic() + self.wait
        while True:
            try:
                return self._once(node)
            except ProvisionError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(self.interval)

    def _once(self, node: Node) -> str:
        facts = node.facts
        assert facts is not None, "a node with facts"
        uefi = facts.firmware == "uefi"
        mac = boot_mac(node)
        dashed = mac.replace(":", "-")
        name = f"grub.cfg-01-{dashed}" if uefi else f"pxelinux.cfg/01-{dashed}"
        http_path = f"/boot/grub/{name}" if uefi else f"/boot/{name}"
        url = self.cfg.server.public_url + http_path
        try:
            resp = requests.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ProvisionError(f"node {node.name}: the server did not answer {url}: {type(exc).__name__}") from None
        if resp.status_code != 200 or not _is_install(resp.text, uefi):
            raise ProvisionError(f"node {node.name}: {url} is not the install config (HTTP {resp.status_code})")
        host, port = self._tftp_addr()
        buf = io.BytesIO()
        try:
            tftpy.TftpClient(host, port).download(name, buf, timeout=self.timeout, retries=2)
        except Exception as exc:  # tftpy raises TftpException, socket errors and timeouts alike
            raise ProvisionError(f"node {node.name}: TFTP {host}:{port} {name}: {type(exc).__name__}: {exc}") from None
        if not _is_install(buf.getvalue().decode(errors="replace"), uefi):
            raise ProvisionError(f"node {node.name}: TFTP {name} is not the install config")
        return f"install config served for {mac} over HTTP and TFTP"


def probe_iso(node: Node, url: str, timeout: float = 120.0) -> str:
    """HEAD the node's virtual-media ISO as its BMC will fetch it (the server builds it on the first
    request): before the BMC is told to insert it, not after."""
    try:
        resp = requests.head(url, timeout=timeout)
    except requests.RequestException as exc:
        raise ProvisionError(f"node {node.name}: the server did not answer for its boot ISO: {type(exc).__name__}") from None
    if resp.status_code != 200 or resp.headers.get("Content-Type") != "application/x-iso9660-image":
        raise ProvisionError(f"node {node.name}: its boot ISO is not served (HTTP {resp.status_code}); "
                             "see the server's log")
    return f"boot ISO served ({int(resp.headers.get('Content-Length', 0)) >> 20} MiB)"


def boot_mac(node: Node) -> str:
    """The management network's first NIC: the one the boot configs are armed for."""
    assert node.facts is not None, "a node with facts"
    return node.facts.management_nics()[0].mac
