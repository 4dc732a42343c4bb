"""Hardening, probed as an attacker on the same network would (every probe on loopback): the
boot service survives floods and slow clients, retransmits on a schedule, refuses what RFCs
refuse, and says plainly when it cannot start."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import time

import pytest
import requests

from . import rawtftp
from .conftest import EXAMPLE, free_port, run_cli, start_server, ui_login, write_config


def _wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def busy_srv(tmp_path):
    (tmp_path / "bootfiles").mkdir()
    (tmp_path / "bootfiles" / "loader.efi").write_bytes(os.urandom(200_000))
    yield from start_server(tmp_path, server_extra="tftp_max_sessions = 1200\ntftp_timeout = 1.0\ntftp_retries = 20\n"
                                                      "tftp_per_source_sessions = 4096\n")  # all from 127.0.0.1


def test_1100_open_sessions_then_a_transfer_still_works_and_the_cap_answers_busy(busy_srv, tmp_path):
    """Past descriptor 1023 select() used to raise and end the TFTP thread for good."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    socks = []
    try:
        for _ in range(1100):  # RRQs that are never ACKed: each holds a session (a socket and a file)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(10)
            s.sendto(b"\0\1loader.efi\0octet\0", ("127.0.0.1", busy_srv.tftp_port))
            assert struct.unpack("!H", s.recv(1024)[:2])[0] == rawtftp.DATA  # the session is open
            socks.append(s)
        assert busy_srv.get("/healthz").json()["tftp_sessions"] >= 1000
        health = busy_srv.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        out = tmp_path / "got.efi"
        res = subprocess.run(["curl", "-sS", "-o", str(out), f"tftp://127.0.0.1:{busy_srv.tftp_port}/loader.efi"],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert out.read_bytes() == (tmp_path / "bootfiles" / "loader.efi").read_bytes()
        over = []
        for _ in range(150):  # past tftp_max_sessions (1200): ERROR "server busy", not silence
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(10)
            s.sendto(b"\0\1loader.efi\0octet\0", ("127.0.0.1", busy_srv.tftp_port))
            socks.append(s)
            over.append(s)
        replies = []
        for s in over:
            data = s.recv(1024)
            replies.append(struct.unpack("!H", data[:2])[0])
        assert rawtftp.ERROR in replies and b"busy" in data or rawtftp.DATA in replies
        assert replies.count(rawtftp.ERROR) >= 150 - (1200 - 1100) - 5
    finally:
        for s in socks:
            s.close()


def test_retransmissions_are_spaced_by_the_timeout_and_a_lossy_transfer_completes(busy_srv):
    """Drop the first copy and the first retransmission of blocks 3, 7 and 11: the second
    retransmission must come a full timeout (1 s) after the first, not at the next loop pass."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(15)
    sock.sendto(b"\0\1loader.efi\0octet\0", ("127.0.0.1", busy_srv.tftp_port))
    got, seen, gaps, expected = bytearray(), {}, [], 1
    while True:
        data, addr = sock.recvfrom(65536)
        op, block = struct.unpack("!HH", data[:4])
        assert op == rawtftp.DATA
        now = time.monotonic()
        seen.setdefault(block, []).append(now)
        if block != expected:
            continue
        if block in (3, 7, 11) and len(seen[block]) < 3:
            continue  # lost: no ACK
        if len(seen[block]) == 3:
            gaps.append(seen[block][2] - seen[block][1])
        got += data[4:]
        sock.sendto(struct.pack("!HH", rawtftp.ACK, block), addr)
        expected += 1
        if len(data) - 4 < 512:
            break
    sock.close()
    assert len(got) == 200_000 and gaps and min(gaps) >= 0.8, gaps


@pytest.mark.parametrize("blksize,ok", [(65464, True), (65465, False), (65536, False), (7, False)])
def test_blksize_outside_rfc2348_gets_an_error(busy_srv, blksize, ok):
    op, payload, sock, _ = rawtftp.request(busy_srv.tftp_port, "loader.efi", options={"blksize": blksize})
    sock.close()
    if ok:
        assert op == rawtftp.OACK and rawtftp.parse_oack(payload)["blksize"] == "65464"
    else:
        assert op == rawtftp.ERROR and rawtftp.error_code(payload) == 8 and b"blksize" in payload


def test_tftp_over_ipv6(tmp_path):
    (tmp_path / "bootfiles").mkdir()
    (tmp_path / "bootfiles" / "loader.efi").write_bytes(b"x" * 3000)
    gen = start_server(tmp_path, tftp_host="::1")
    srv = next(gen)
    try:
        res = subprocess.run(["curl", "-sS", f"tftp://[::1]:{srv.tftp_port}/loader.efi"], capture_output=True,
                             timeout=30)
        assert res.returncode == 0 and res.stdout == b"x" * 3000, res.stderr
    finally:
        gen.close()


def test_healthz_reports_a_dead_tftp_loop(cfg_path):
    from provision import config as config_mod
    from provision import services
    from provision.web import create_app

    svc = services.build(config_mod.load(cfg_path))

    class DeadTftp:
        alive, sessions = False, {}

    app = create_app(dataclasses.replace(svc, tftp=DeadTftp()), admin_token="t" * 20, secret_key="k" * 32)
    res = app.test_client().get("/healthz")
    assert res.status_code == 503 and "tftp" in res.json["error"]
    svc.close()


def test_slow_clients_do_not_starve_http(server):
    """More half-open connections than waitress' default limit (100), from another address: /healthz
    still answers (that address holds at most http_per_source_limit of them, tests/test_edge.py)."""
    port = int(server.http.rsplit(":", 1)[1])
    idle = []
    try:
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            idle.append(s)
        assert requests.get(server.http + "/healthz", timeout=10).json()["status"] == "ok"
    finally:
        for s in idle:
            s.close()


def test_busy_port_and_bad_db_path_are_clean_errors(tmp_path):
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    busy = holder.getsockname()[1]
    try:
        cfg = write_config(tmp_path, free_port(), busy)
        res = run_cli("serve", config=cfg)
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert f"tftp_bind 127.0.0.1:{busy}: cannot listen: Address already in use" in res.stderr
    finally:
        holder.close()
    bad = tmp_path / "bad"
    bad.mkdir()
    cfg = write_config(bad)
    cfg.write_text(cfg.read_text().replace(f'db_url = "sqlite:///{bad}/provision.db"',
                                           'db_url = "sqlite:////proc/no-such-dir/provision.db"'))
    res = run_cli("node", "list", config=cfg)  # a command that reads: it is not there
    assert res.returncode == 2 and "no provision database at /proc/no-such-dir/provision.db" in res.stderr
    res = run_cli("node", "import", str(EXAMPLE), config=cfg)  # one that creates: it cannot
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "db_url sqlite:////proc/no-such-dir/provision.db: cannot open the database" in res.stderr


def test_state_files_are_private(tmp_path):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(f'db_url = "sqlite:///{tmp_path}/provision.db"',
                                           f'db_url = "sqlite:///{tmp_path}/state/provision.db"'))
    assert run_cli("node", "import", str(EXAMPLE), config=cfg).returncode == 0
    db = tmp_path / "state" / "provision.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600 and stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for f in db.parent.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    assert sys.platform.startswith("linux")


# -- one uniqueness check for every writer of facts ----------------------------------------------
def test_capturing_one_nodes_mac_for_another_is_refused_on_every_path(cfg_path, tmp_path):
    import copy

    import yaml
    from click.testing import CliRunner

    from provision.cli import main

    run = lambda *a: CliRunner().invoke(main, ["--config", str(cfg_path), *a])  # noqa: E731
    assert run("node", "import", str(EXAMPLE)).exit_code == 0
    data = yaml.safe_load(EXAMPLE.read_text())
    stolen = copy.deepcopy(data)
    stolen["nodes"][1]["facts"]["nics"][0]["mac"] = data["nodes"][0]["facts"]["nics"][0]["mac"]  # B gets A's MAC
    (tmp_path / "stolen.yaml").write_text(yaml.safe_dump(stolen))
    res = run("facts", "capture", "rhvnode4", "--from", "file", "--file", str(tmp_path / "stolen.yaml"))
    assert res.exit_code == 2 and "MAC 0c:c4:7a:3b:03:01 is also used by node 'rhvnode3'" in res.output
    from provision import config as config_mod
    from provision import services

    svc = services.build(config_mod.load(cfg_path))
    try:
        assert svc.store.node_for_mac("0c:c4:7a:3b:03:01") == "rhvnode3"  # A's MAC still serves A's config
        from provision.capture import service as capture
        from provision.domain import parse_nodes

        b = parse_nodes({"nodes": [stolen["nodes"][1]]})[0].facts
        with pytest.raises(Exception, match="also used by node 'rhvnode3'"):
            capture.store(svc, "rhvnode4", b, "engine")
        token = svc.store.create_collection("rhvnode4", 600)
        from tests.test_capture import fixture_upload  # the collector's upload of A's host, sent for B

        status, body = capture.accept_upload(svc, token, fixture_upload(
            __import__("pathlib").Path(__file__).parent / "data" / "node" / "el8", "uefi"))
        assert status == 422 and "also used by node 'rhvnode3'" in body["error"]
        assert len(svc.store.snapshots("rhvnode4")) == 1
    finally:
        svc.close()


@pytest.mark.parametrize("fleet", [10, 2000])
def test_a_boot_config_request_costs_the_same_store_work_at_any_fleet_size(tmp_path, fleet):
    """Counted with SQLAlchemy events: a per-MAC request is a bounded number of queries."""
    import yaml
    from sqlalchemy import event

    from provision import config as config_mod
    from provision import services
    from provision.domain import parse_nodes
    from provision.web import create_app

    base = yaml.safe_load(EXAMPLE.read_text())["nodes"][0]
    nodes = []
    for i in range(fleet):
        n = yaml.safe_load(yaml.safe_dump(base))
        n["name"], n["fqdn"] = f"n{i}", f"n{i}.lab.example.com"
        n["bmc"]["address"] = f"10.{i // 250}.{i % 250}.1"
        for j, nic in enumerate(n["facts"]["nics"]):
            nic["mac"] = f"02:00:{i // 256:02x}:{i % 256:02x}:00:{j:02x}"
        for k, att in enumerate(n["facts"]["networks"]):
            for key in ("address", "address6"):
                if att.get(key):
                    att[key] = None
            att.pop("gateway", None), att.pop("gateway6", None)
            if att.get("management"):
                att["address"] = f"10.{100 + i // 250}.{i % 250}.{k + 2}/8"
        nodes.append(n)
    svc = services.build(config_mod.load(write_config(tmp_path)))
    svc.store.import_nodes(parse_nodes({"nodes": nodes}))
    app = create_app(svc, admin_token="t" * 20, secret_key="k" * 32)
    client = app.test_client()
    queries = []
    event.listen(svc.store.engine, "before_cursor_execute", lambda *a, **k: queries.append(a[2]))
    res = client.get("/boot/grub/grub.cfg-01-02-00-00-05-00-00")
    assert res.status_code == 200 and "n5.lab.example.com" in res.text
    assert 0 < len(queries) <= 8, queries
    svc.close()


# -- HTTP: logs, login, sessions, headers, media, collector --------------------------------------
def test_a_big_installer_log_is_accepted_truncated_and_marked(tmp_path):
    """Over HTTP: a 3 MB `failed` log (installer_log_max 1 MiB) is kept truncated, not refused with 413."""
    from provision import config as config_mod
    from provision import services
    from provision.web import create_app
    from provision.workflow import states as S
    from provision.workflow.machine import advance

    from .workflow_helpers import import_nodes, loopback_inventory, mgmt_ip

    svc = services.build(config_mod.load(write_config(tmp_path)), bootcheck=False)
    (tmp_path / "bmc.pw").write_text("pw\n")
    import_nodes(svc.store, loopback_inventory(pw_file=str(tmp_path / "bmc.pw")))
    advance(svc.store, "rhvnode3", "start")
    _, token = svc.store.arm("rhvnode3", svc.key, 3600)
    app = create_app(svc, admin_token="t" * 20, secret_key="k" * 32)
    body = b"y" * (3 << 20) + b"THE-END"
    res = app.test_client().post(f"/api/v1/callback/{token}/failed", data=body,
                                 environ_base={"REMOTE_ADDR": mgmt_ip(0)})
    assert res.status_code == 200, res.data
    st = svc.store.node_state("rhvnode3")
    assert st.state == S.FAILED and f"truncated from {len(body)}" in st.fail_reason
    kept = svc.store.logs("rhvnode3")[0][2]
    assert kept.startswith("[provision: log truncated") and kept.endswith("THE-END")
    assert len(kept) < (1 << 20) + 200
    svc.close()


@pytest.mark.parametrize("nxt", ["/\t/evil.com", "//evil.com", "/\\evil.com", "https://evil.com", "/a\r\nSet-Cookie: x=1"])
def test_login_never_redirects_off_site(server, nxt):
    s = requests.Session()
    res = ui_login(s, server.http, server.token, nxt, allow_redirects=False)
    assert res.status_code == 302 and res.headers["Location"] in ("/", f"{server.http}/"), res.headers["Location"]


def test_ui_sessions_end_with_logout_and_with_a_new_admin_token(tmp_path):
    gen = start_server(tmp_path)
    srv = next(gen)
    try:
        s = requests.Session()
        assert ui_login(s, srv.http, srv.token).status_code == 200
        assert s.get(srv.http + "/", allow_redirects=False, timeout=10).status_code == 200
        copied = s.cookies.get("session")  # what someone who saw the cookie keeps
        assert s.post(srv.http + "/logout", timeout=10).status_code == 400  # a form without its CSRF token
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', s.get(srv.http + "/", timeout=10).text).group(1)
        s.post(srv.http + "/logout", data={"csrf_token": csrf}, timeout=10)
        assert s.get(srv.http + "/", allow_redirects=False, timeout=10).status_code == 302
        replay = requests.Session()
        replay.cookies.set("session", copied)  # the cookie from before the logout: ended with it
        assert replay.get(srv.http + "/", allow_redirects=False, timeout=10).status_code == 302
        assert replay.get(srv.http + "/api/v1/events", allow_redirects=False, timeout=10).status_code == 401
        ui_login(s, srv.http, srv.token)
        cookie = s.cookies.get("session")
        assert "Secure" not in str(s.cookies)  # http public_url
    finally:
        gen.close()
    (tmp_path / "admin.token").write_text("a-brand-new-admin-token-0123456789\n")  # rotated while down
    gen = start_server(tmp_path)
    srv = next(gen)
    try:
        stale = requests.Session()
        stale.cookies.set("session", cookie)
        assert stale.get(srv.http + "/", allow_redirects=False, timeout=10).status_code == 302
    finally:
        gen.close()


def test_secure_cookie_behind_https(cfg_path):
    from provision import config as config_mod
    from provision import services
    from provision.web import create_app

    cfg = config_mod.load(cfg_path)
    cfg.server.public_url = "https://provision.lab.example.com"
    svc = services.build(cfg)
    app = create_app(svc, admin_token="t" * 20, secret_key="k" * 32)
    app.config["WTF_CSRF_ENABLED"] = False  # the cookie's flags are the point here
    res = app.test_client().post("/login", data={"token": "t" * 20, "next": "/"})
    assert "Secure" in res.headers["Set-Cookie"] and "HttpOnly" in res.headers["Set-Cookie"]
    svc.close()


def test_bearer_scheme_is_case_insensitive(server):
    for scheme in ("Bearer", "bearer", "BEARER"):
        r = requests.get(server.http + "/api/v1/nodes", headers={"Authorization": f"{scheme} {server.token}"}, timeout=10)
        assert r.status_code == 200, scheme
    assert requests.get(server.http + "/api/v1/nodes", headers={"Authorization": "Basic x"}, timeout=10).status_code == 401


def test_media_follows_links_only_inside_its_root(server, tmp_path):
    media = tmp_path / "media"
    (media / "iso").mkdir(parents=True, exist_ok=True)
    (media / "iso" / "vmlinuz").write_bytes(b"kernel")
    (media / "rhvh").symlink_to(media / "iso")  # e.g. an ISO mounted under the root: followed
    secret = tmp_path / "outside.txt"
    secret.write_text("secret")
    (media / "leak").symlink_to(secret)  # out of the root: refused
    assert server.get("/media/rhvh/vmlinuz").content == b"kernel"
    assert server.get("/media/leak").status_code == 404
    assert server.get("/media/../admin.token").status_code == 404


def test_collector_upload_from_another_address_is_refused_and_does_not_burn_the_token(cfg_path):
    import yaml

    from provision import config as config_mod
    from provision import services
    from provision.capture import service as capture
    from provision.domain import parse_nodes

    svc = services.build(config_mod.load(cfg_path))
    svc.store.import_nodes(parse_nodes(yaml.safe_load(EXAMPLE.read_text())))
    token = svc.store.create_collection("rhvnode3", 600)
    status, body = capture.accept_upload(svc, token, "### end\n", "198.51.100.250")
    assert status == 403 and "not accepted from this address" in body["error"]
    assert svc.store.collection_node(token) == "rhvnode3"  # still usable by the node itself
    status, _ = capture.accept_upload(svc, token, "### end\n", "192.0.2.13")  # from the node, but malformed:
    assert status == 422 and svc.store.collection_node(token) == "rhvnode3"   # the collector may send again
    svc.close()


# -- YAML inventories ------------------------------------------------------------------------------
@pytest.mark.parametrize("content,message", [
    (b"nodes:\n  - name: a\n    name: b\n", "duplicate key 'name' (first at line 2)"),
    (b"nodes: " + b"[" * 200 + b"]" * 200 + b"\n", "nested deeper than 64 levels"),
    (b"nodes:\n  - name: caf\xe9\n", "not UTF-8 text (byte 20)"),
    (b"a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
     b"g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n", "expands to more than"),
    (b"nodes:\n  - name: a\n    bmc: {password: hunter2-secret\n", "not valid YAML at line"),
])
def test_bad_inventories_are_input_errors_that_echo_nothing(tmp_path, cfg_path, content, message):
    f = tmp_path / "inv.yaml"
    f.write_bytes(content)
    res = run_cli("node", "import", str(f), config=cfg_path)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr and "hunter2" not in res.stderr, res.stderr
