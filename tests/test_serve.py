"""`provision serve` over real sockets: HTTP (requests) and TFTP (curl, tftp-hpa, a raw client)."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import subprocess
import time

import pytest
import requests

from provision.domain import load_yaml, parse_nodes

from . import rawtftp
from .conftest import EXAMPLE, ui_login

MAC3 = "0c:c4:7a:3b:03:01"
MAC3_DASH = MAC3.replace(":", "-")
MAC4 = "0c:c4:7a:3b:04:01"


@pytest.fixture
def srv(server):
    server.svc.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    # per-MAC configs are rendered off the TFTP loop and follow store changes within ~0.5 s
    assert wait_for(lambda: server.get("/metrics").ok and _tftp_ok(server.tftp_port, f"grub.cfg-01-{MAC3_DASH}"))
    return server


def _tftp_ok(port: int, name: str) -> bool:
    op, _, sock, _ = rawtftp.request(port, name)
    sock.close()
    return op == rawtftp.DATA


def curl_tftp(port: int, path: str, out, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "60", *extra, "-o", str(out),
                           f"tftp://127.0.0.1:{port}/{path}"], capture_output=True, text=True, timeout=90)


def wait_for(fn, timeout: float = 10.0):
    """Poll fn() until it returns a truthy value (the TFTP config cache refreshes off-loop)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


# -- TFTP ------------------------------------------------------------------------------------
@pytest.mark.parametrize("blksize", [512, 1468])
def test_tftp_20mb_loader_byte_identical(srv, tmp_path, blksize):
    loader = srv.root / "bootfiles" / "shimx64.efi"
    loader.write_bytes(os.urandom(20 * 1024 * 1024))
    out = tmp_path / f"out-{blksize}"
    res = curl_tftp(srv.tftp_port, "shimx64.efi", out, "--tftp-blksize", str(blksize))
    assert res.returncode == 0, res.stderr
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(loader.read_bytes()).digest()


def test_tftp_tsize_and_blksize_negotiated(srv):
    (srv.root / "bootfiles" / "grubx64.efi").write_bytes(b"x" * 123457)
    op, payload, sock, _ = rawtftp.request(srv.tftp_port, "grubx64.efi", options={"tsize": 0, "blksize": 1468})
    sock.close()
    assert op == rawtftp.OACK
    assert rawtftp.parse_oack(payload) == {"tsize": "123457", "blksize": "1468"}


def test_tftp_per_mac_grub_follows_build_mode(srv, tmp_path):
    out = tmp_path / "grub.cfg"
    assert curl_tftp(srv.tftp_port, f"grub.cfg-01-{MAC3_DASH}", out).returncode == 0
    assert "set default=local" in out.read_text()
    _, token = srv.svc.store.arm("rhvnode3", srv.svc.key, 3600)

    def armed():
        curl_tftp(srv.tftp_port, f"grub.cfg-01-{MAC3_DASH}", out)
        return f"/ks/{token} inst.ks.sendmac" in out.read_text()

    assert wait_for(armed)
    assert "set default=install" in out.read_text()
    assert "ifname=eno1:0c:c4:7a:3b:03:01" in out.read_text()
    http = srv.get(f"/boot/grub/grub.cfg-01-{MAC3_DASH}")
    assert http.status_code == 200 and http.text == out.read_text()


def test_tftp_pxelinux_with_tftp_hpa_client(srv, tmp_path):
    out = tmp_path / "pxe"
    res = subprocess.run(["tftp", "127.0.0.1", str(srv.tftp_port), "-m", "binary", "-c", "get",
                          f"pxelinux.cfg/01-{MAC4.replace(':', '-')}", str(out)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "rhvnode4.lab.example.com (local boot)" in out.read_text() and "LOCALBOOT 0" in out.read_text()


def test_tftp_unknown_mac_and_missing_file_not_found(srv):
    for name in ("grub.cfg-01-02-00-00-00-00-99", "nope.efi"):
        op, payload, sock, _ = rawtftp.request(srv.tftp_port, name)
        sock.close()
        assert (op, rawtftp.error_code(payload)) == (rawtftp.ERROR, 1)


def test_tftp_upload_refused(srv, tmp_path):
    src = tmp_path / "evil.bin"
    src.write_bytes(b"evil" * 100)
    res = subprocess.run(["curl", "-sS", "--max-time", "20", "-T", str(src), f"tftp://127.0.0.1:{srv.tftp_port}/evil.bin"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
    op, payload, sock, _ = rawtftp.request(srv.tftp_port, "evil2.bin", opcode=rawtftp.WRQ)
    sock.close()
    assert (op, rawtftp.error_code(payload)) == (rawtftp.ERROR, 2)  # access violation
    found = [p for p in srv.root.rglob("evil*") if p != src]
    assert found == []


def test_tftp_traversal_symlink_and_templates_refused(srv):
    boot = srv.root / "bootfiles"
    (srv.root / "outside.txt").write_text("secret")
    (boot / "escape").symlink_to(srv.root / "outside.txt")
    (boot / "inside").symlink_to(boot / "ok.txt")
    (boot / "ok.txt").write_text("fine")
    (boot / "grub.cfg.j2").write_text("{{ template }}")
    for name in ("../outside.txt", "media/../../outside.txt", "escape", "/grub.cfg.j2", "a/../../provision.db"):
        op, payload, sock, _ = rawtftp.request(srv.tftp_port, name)
        sock.close()
        assert op == rawtftp.ERROR, name
        assert b"secret" not in payload
    op, payload, sock, _ = rawtftp.request(srv.tftp_port, "inside")
    sock.close()
    assert op == rawtftp.DATA and payload[2:] == b"fine"


def test_tftp_garbage_datagrams_do_not_stop_the_server(srv, tmp_path):
    (srv.root / "bootfiles" / "ldlinux.c32").write_bytes(b"L" * 5000)
    garbage = [b"", b"\x00", b"\xff\xff\xff", b"\x00\x01no-terminator", b"\x00\x09" + b"A" * 600,
               b"\x00\x03\x00\x01data-on-main-port", b"\x00\x01\xff\xfe\x00octet\x00",
               b"\x00\x01file\x00octet\x00blksize\x00notanumber\x00", os.urandom(1400)]
    for g in garbage:
        rawtftp.send_raw(srv.tftp_port, g)
    out = tmp_path / "ld"
    res = curl_tftp(srv.tftp_port, "ldlinux.c32", out)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == b"L" * 5000
    assert srv.proc.poll() is None


# -- HTTP: kickstart -------------------------------------------------------------------------
def test_ks_with_matching_mac_header_renders_and_is_recorded(srv):
    _, token = srv.svc.store.arm("rhvnode3", srv.svc.key, 3600)
    r = srv.get(f"/ks/{token}", headers={"X-RHN-Provisioning-MAC-0": "eth0 0C:C4:7A:3B:03:01",
                                          "X-RHN-Provisioning-MAC-1": "eth1 02:00:00:00:00:77"})
    assert r.status_code == 200
    assert "network --device=0c:c4:7a:3b:03:01" in r.text and f"/api/v1/callback/{token}/installed" in r.text
    assert srv.svc.store.active_build("rhvnode3").ks_fetched_at is not None
    assert [e.kind for e in srv.svc.store.events("rhvnode3")] == ["ks-fetched"]
    r = srv.get(f"/ks/{token}")  # no MAC header: the token alone (readable in the boot configs) is not enough
    assert r.status_code == 403 and "network" not in r.text
    head = requests.head(f"{srv.http}/ks/{token}", headers={"X-RHN-Provisioning-MAC-0": f"eth0 {MAC3}"}, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) > 1000
    assert [e.kind for e in srv.svc.store.events("rhvnode3")].count("ks-fetched") == 1  # HEAD records no fetch


def test_ks_is_not_served_to_another_machine_with_the_token_and_the_mac(srv):
    """The token is in the node's public boot config and its MAC in the file name: a machine that
    is not the node gets neither the kickstart nor a recorded fetch (install_sources here is
    127.0.0.1/32; the example node's own addresses are 192.0.2.x)."""
    build, token = srv.svc.store.arm("rhvnode3", srv.svc.key, 3600)
    conn = http.client.HTTPConnection("127.0.0.1", int(srv.http.rsplit(":", 1)[1]), timeout=10,
                                      source_address=("127.0.0.2", 0))
    conn.request("GET", f"/ks/{token}", headers={"X-RHN-Provisioning-MAC-0": f"eth0 {MAC3}"})
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    assert resp.status == 403 and "network" not in body
    assert srv.svc.store.active_build("rhvnode3").ks_fetched_at is None
    denied = [e.message for e in srv.svc.store.events("rhvnode3") if e.kind == "ks-denied"]
    assert denied and "127.0.0.2" in denied[-1]
    assert srv.get(f"/ks/{token}", headers={"X-RHN-Provisioning-MAC-0": f"eth0 {MAC3}"}).status_code == 200


def test_ks_is_not_served_once_installed_was_accepted(srv):
    build, token = srv.svc.store.arm("rhvnode3", srv.svc.key, 3600)
    headers = {"X-RHN-Provisioning-MAC-0": f"eth0 {MAC3}"}
    assert srv.get(f"/ks/{token}", headers=headers).status_code == 200
    srv.svc.store.set_boot_local(build.id)  # what the `installed` callback does first
    r = srv.get(f"/ks/{token}", headers=headers)
    assert r.status_code == 403 and "network" not in r.text


def test_ks_with_another_nodes_mac_is_forbidden(srv):
    _, token = srv.svc.store.arm("rhvnode3", srv.svc.key, 3600)
    for headers in ({"X-RHN-Provisioning-MAC-0": f"eth0 {MAC4}"},
                    {"X-RHN-Provisioning-MAC-0": "eth0 02:00:00:00:00:77"},
                    {"X-RHN-Provisioning-MAC-0": f"eth0 {MAC3}", "X-RHN-Provisioning-MAC-1": f"eth1 {MAC4}"},
                    {"X-RHN-Provisioning-MAC-0": "eth0 not-a-mac"}):
        r = srv.get(f"/ks/{token}", headers=headers)
        assert r.status_code == 403, headers
        assert "network" not in r.text and "rhvnode" not in r.text
    assert srv.svc.store.active_build("rhvnode3").ks_fetched_at is None


def test_ks_is_served_to_a_host_that_sends_a_header_for_every_net_device(srv):
    """anaconda sends one X-RHN-Provisioning-MAC header per /sys/class/net entry: a host with 4 NICs,
    2 bonds and their VLANs, a BMC USB NIC and 8 InfiniBand ports (20-byte addresses) sends 40; 16
    was the old cap and refused it. A flood past MAX_MAC_HEADERS is still refused."""
    from provision.core.kickstart import MAX_MAC_HEADERS
    _, token = srv.svc.store.arm("rhvnode3", srv.svc.key, 3600)
    ib = "80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:bb:{:02x}"
    devices = [f"eno1 {MAC3}", f"bond0 {MAC3}", f"bond0.100 {MAC3}", "usb0 0a:94:ef:00:00:01"]
    devices += [f"ib{i} {ib.format(i)}" for i in range(8)] + [f"vnet{i} 02:00:00:00:01:{i:02x}" for i in range(28)]
    assert len(devices) == 40
    r = srv.get(f"/ks/{token}", headers={f"X-RHN-Provisioning-MAC-{i}": d for i, d in enumerate(devices)})
    assert r.status_code == 200 and "network --device=0c:c4:7a:3b:03:01" in r.text
    flood = {f"X-RHN-Provisioning-MAC-{i}": f"x{i} 02:00:00:00:{i // 256:02x}:{i % 256:02x}"
             for i in range(MAX_MAC_HEADERS)} | {"X-RHN-Provisioning-MAC-9999": f"eno1 {MAC3}"}
    r = srv.get(f"/ks/{token}", headers=flood)
    assert r.status_code == 403 and "network" not in r.text


def test_ks_unknown_expired_and_ended_tokens(srv):
    assert srv.get("/ks/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert srv.get("/ks/short").status_code == 404
    _, expired = srv.svc.store.arm("rhvnode4", srv.svc.key, -1)
    r = srv.get(f"/ks/{expired}")
    assert r.status_code == 403 and "rhvnode4" not in r.text
    _, ended = srv.svc.store.arm("rhvnode5", srv.svc.key, 3600)
    srv.svc.store.end_build("rhvnode5", "done")
    assert srv.get(f"/ks/{ended}").status_code == 403
    _, old = srv.svc.store.arm("rhvnode3", srv.svc.key, 3600)
    _, new = srv.svc.store.arm("rhvnode3", srv.svc.key, 3600)
    mac = {"X-RHN-Provisioning-MAC-0": f"eth0 {MAC3}"}
    assert srv.get(f"/ks/{old}", headers=mac).status_code == 403 and srv.get(f"/ks/{new}", headers=mac).status_code == 200
    metrics = srv.get("/metrics").text
    assert re.search(r'provision_kickstart_denied_total\{reason="expired"\} 3\.0', metrics)


# -- HTTP: boot configs, API, UI, ops --------------------------------------------------------
def test_http_boot_configs(srv):
    assert "LOCALBOOT 0" in srv.get(f"/boot/pxelinux.cfg/01-{MAC3_DASH}").text
    ipxe = srv.get(f"/boot/ipxe?mac={MAC3.upper()}")
    assert ipxe.status_code == 200 and ipxe.text.startswith("#!ipxe")
    assert srv.get("/boot/ipxe?mac=02:00:00:00:00:99").status_code == 404
    assert srv.get("/boot/ipxe?mac=%0a").status_code == 404
    assert srv.get("/boot/grub/grub.cfg-01-02-00-00-00-00-99").status_code == 404


def test_api_requires_bearer_token(srv):
    assert requests.get(srv.http + "/api/v1/nodes", timeout=5).status_code == 401
    r = requests.get(srv.http + "/api/v1/nodes", headers={"Authorization": "Bearer wrong"}, timeout=5)
    assert r.status_code == 401
    assert [n["name"] for n in srv.api("/nodes").json()["nodes"]] == ["rhvnode3", "rhvnode4", "rhvnode5"]


def test_api_render_preview_masks_and_checks(srv):
    _, token = srv.svc.store.arm("rhvnode5", srv.svc.key, 3600)
    r = srv.api("/nodes/rhvnode5/render/kickstart")
    assert r.status_code == 200 and token not in r.text and "/ks/" not in r.text
    assert "callback/********/installed" in r.text
    checked = srv.api("/nodes/rhvnode5/render/kickstart?check=1").json()
    assert checked["problems"] == [] and checked["armed"] is True
    grub = srv.api("/nodes/rhvnode5/render/grub").text
    assert "inst.ks=http://127.0.0.1:" in grub and "/ks/********" in grub and token not in grub
    assert srv.api("/nodes/rhvnode5/render/bogus").status_code == 400
    assert srv.api("/nodes/ghost/render/grub").status_code == 404


def test_api_import_is_all_or_nothing(srv):
    bad = EXAMPLE.read_text().replace('"0c:c4:7a:3b:05:04"', '"0c:c4:7a:3b:03:04"')
    r = srv.api("/nodes", method="POST", data=bad)
    assert r.status_code == 400 and "MAC 0c:c4:7a:3b:03:04" in r.json()["error"]
    assert len(srv.svc.store.snapshots("rhvnode5")) == 1


def test_ui_login_and_node_page(srv):
    s = requests.Session()
    r = s.get(srv.http + "/", allow_redirects=False, timeout=5)
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert s.post(srv.http + "/login", data={"token": srv.token}, timeout=5).status_code == 400  # no CSRF token
    assert ui_login(s, srv.http, "wrong").status_code == 401
    r = ui_login(s, srv.http, srv.token)
    assert r.status_code == 200 and "rhvnode4.lab.example.com" in r.text
    page = s.get(srv.http + "/nodes/rhvnode3", timeout=5).text
    assert "INSTALL: wiped" in page and "kept, never touched" in page
    assert "autopart --type=thinp" in page and "inst.ks=http://127.0.0.1" in page
    assert "pykickstart RHEL 8 and 9:" in page and '<span class="ok">valid</span>' in page
    # a second snapshot whose NICs came back under other names: the history shows the change, by MAC
    facts = srv.svc.store.snapshot("rhvnode3").facts
    second = srv.svc.store.add_snapshot("rhvnode3", facts.renamed({"eno2": "enp2s0f0"}), "engine")
    page = s.get(srv.http + "/nodes/rhvnode3", timeout=5).text
    history = page[page.index('id="snapshots"'):page.index("What the node gets")]
    assert f"<td>{second.id}</td>" in history and "eno2" in history and "enp2s0f0" in history, history
    # the console's live updates: the event stream takes its session (an EventSource sends no header)
    with s.get(srv.http + "/api/v1/events", stream=True, timeout=5) as live:
        assert live.status_code == 200 and live.headers["Content-Type"].startswith("text/event-stream")
    assert requests.get(srv.http + "/api/v1/events", timeout=5).status_code == 401


def test_healthz_and_metrics(srv, tmp_path):
    assert srv.get("/healthz").json()["status"] == "ok"
    curl_tftp(srv.tftp_port, f"grub.cfg-01-{MAC3_DASH}", tmp_path / "g")
    metrics = srv.get("/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert re.search(r'provision_tftp_requests_total\{outcome="config"\} [1-9]', metrics.text)
    assert "provision_http_requests_total" in metrics.text


def test_media_served_without_traversal(srv):
    media = srv.root / "media" / "rhvh" / "images" / "pxeboot"
    media.mkdir(parents=True)
    (media / "vmlinuz").write_bytes(b"K" * 1000)
    assert srv.get("/media/rhvh/images/pxeboot/vmlinuz").content == b"K" * 1000
    assert srv.get("/media/../provision.db").status_code == 404
    assert srv.get("/media/%2e%2e/provision.db").status_code == 404
    op, payload, sock, _ = rawtftp.request(srv.tftp_port, "/media/rhvh/images/pxeboot/vmlinuz")
    sock.close()
    assert op == rawtftp.DATA and payload[2:] == b"K" * 512


def test_tftp_config_falls_back_to_local_boot_when_the_build_expires(srv, tmp_path):
    srv.svc.store.arm("rhvnode4", srv.svc.key, 2)
    name = f"grub.cfg-01-{MAC4.replace(':', '-')}"
    out = tmp_path / "g"

    def content():
        curl_tftp(srv.tftp_port, name, out)
        return out.read_text() if out.exists() else ""

    assert wait_for(lambda: "set default=install" in content())
    assert wait_for(lambda: "set default=local" in content(), timeout=15)


def test_boot_probe_checks_the_served_install_config_over_http_and_tftp(server):
    """What the runner checks before it power-cycles a node: the server's own answer, as the node gets it."""
    import socket

    import yaml

    from provision.errors import ProvisionError
    from provision.workflow.bootprobe import BootProbe

    from .conftest import free_port

    server.svc.store.import_nodes(parse_nodes(yaml.safe_load(EXAMPLE.read_text())))
    node = server.svc.store.get("rhvnode3").node
    with pytest.raises(ProvisionError, match="is not the install config"):
        BootProbe(server.svc.cfg, wait=0.3)(node)  # not armed: local boot is served (and stays so)
    server.svc.store.arm("rhvnode3", server.svc.key, 3600)
    assert "over HTTP and TFTP" in BootProbe(server.svc.cfg, wait=30)(node)  # returns as soon as both serve it
    down = server.svc.cfg.model_copy(deep=True)
    down.server.tftp_bind = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    with pytest.raises(ProvisionError, match="TFTP"):
        BootProbe(down, timeout=0.5, wait=0)(node)
