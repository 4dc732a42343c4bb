"""The HTTP front of `serve` (web/front.py) against a real server: it answers cached per-MAC boot
configs exactly as the Flask routes do, hands everything else to waitress unread (also in the middle
of a keep-alive or pipelined connection), and closes connections as HTTP says."""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
import requests

from provision import config as config_mod
from provision import services
from provision.domain import load_yaml, parse_nodes
from provision.web import create_app
from provision.web.httphead import byte_range, loggable_path, parse_head
from provision.web.recorder import Fetch, Recorder

from .conftest import EXAMPLE, start_server, write_config

MAC = "0c:c4:7a:3b:03:01"
GRUB = f"/boot/grub/grub.cfg-01-{MAC.replace(':', '-')}"


@pytest.fixture
def srv(tmp_path):
    svc = services.build(config_mod.load(write_config(tmp_path)), bootcheck=False)
    svc.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))  # before serve starts:
    svc.close()  # its refresher renders every node known at start-up, and /healthz says when that is done
    gen = start_server(tmp_path, server_extra="http_channel_timeout = 1\n")
    server = next(gen)
    while not requests.get(server.http + "/healthz", timeout=10).json()["bootcache"]["warm"]:
        pass
    yield server
    gen.close()


def _port(server) -> int:
    return int(server.http.rsplit(":", 1)[1])


def _http(server) -> dict:
    return requests.get(server.http + "/healthz", timeout=10).json()["http"]


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """`count` HTTP responses read off one connection: (status, body) each."""
    buf, out = b"", []
    while len(out) < count:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buf[:head_end].decode("latin-1").split("\r\n")
            length = next(int(h.split(":", 1)[1]) for h in head if h.lower().startswith("content-length:"))
            if len(buf) >= head_end + 4 + length:
                out.append((int(head[0].split()[1]), buf[head_end + 4:head_end + 4 + length]))
                buf = buf[head_end + 4 + length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} of {count} responses"
        buf += chunk
    return out


def test_the_front_answers_exactly_as_the_flask_routes_and_hands_misses_over(srv):
    svc = srv.svc
    flask = create_app(svc.cfg, store=svc.store, renderer=svc.renderer, admin_token="t" * 20,
                       secret_key="k" * 32).test_client()
    hits = [GRUB, f"/boot/pxelinux.cfg/01-{MAC.replace(':', '-')}", f"/boot/ipxe?mac={MAC}"]
    misses = ["/boot/grub/grub.cfg-01-02-00-00-00-00-99", "/boot/ipxe?mac=nonsense", "/boot/grub/grub.cfg"]
    before = _http(srv)
    for path in hits + misses:
        got, want = requests.get(srv.http + path, timeout=10), flask.get(path)
        assert (got.status_code, got.content, got.headers["Content-Type"]) == \
               (want.status_code, want.data, want.headers["Content-Type"]), path
    after = _http(srv)
    assert after["answered_by_front"] - before["answered_by_front"] == len(hits)
    assert after["handed_to_wsgi"] - before["handed_to_wsgi"] == len(misses) + 1  # and that /healthz
    assert 'provision_http_requests_total{endpoint="boot.grub",status="200"}' in requests.get(srv.http + "/metrics").text


def test_one_connection_mixes_answered_and_handed_over_requests(srv):
    want = requests.get(srv.http + GRUB, timeout=10).content
    before = _http(srv)
    with socket.create_connection(("127.0.0.1", _port(srv)), timeout=30) as s:
        get = f"GET {GRUB} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        s.sendall(get)  # answered by the front; the connection stays open
        assert _read_responses(s, 1) == [(200, want)]
        # pipelined: the front answers the first, gives the connection to waitress at the second,
        # which must find the third one unread and answer it too
        s.sendall(get + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + get)
        (s1, b1), (s2, b2), (s3, b3) = _read_responses(s, 3)
        assert (s1, b1) == (200, want) and s2 == 200 and b'"status":"ok"' in b2 and (s3, b3) == (200, want)
    after = _http(srv)
    assert after["answered_by_front"] - before["answered_by_front"] == 2
    assert after["handed_to_wsgi"] - before["handed_to_wsgi"] == 2  # the pipelined connection, this /healthz


@pytest.mark.parametrize("request_head", [
    f"GET {GRUB} HTTP/1.0\r\n\r\n",
    f"GET {GRUB} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
])
def test_the_answer_is_whole_and_the_front_closes_when_told(srv, request_head):
    want = requests.get(srv.http + GRUB, timeout=10).content
    with socket.create_connection(("127.0.0.1", _port(srv)), timeout=30) as s:
        s.sendall(request_head.encode())
        data = b""
        while chunk := s.recv(65536):  # ends only when the server closes
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Server: provision" in head and body == want


def test_an_idle_keep_alive_connection_is_closed_after_the_channel_timeout(srv):
    with socket.create_connection(("127.0.0.1", _port(srv)), timeout=30) as s:
        s.sendall(f"GET {GRUB} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert _read_responses(s, 1)[0][0] == 200
        assert s.recv(1) == b""  # http_channel_timeout = 1: the front closes it (the socket waits 30 s)


def test_a_request_in_two_segments_is_answered_all_the_same(srv):
    want = requests.get(srv.http + GRUB, timeout=10).content
    with socket.create_connection(("127.0.0.1", _port(srv)), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(f"GET {GRUB} HTTP/1.1\r\nHo".encode())  # the front may see this part alone: waitress
        s.sendall(b"st: x\r\n\r\n")  # then reads the rest and answers through Flask
        assert _read_responses(s, 1) == [(200, want)]


def _armed(srv, name: str) -> tuple[str, str]:
    """Arm `name` from this process (as a CLI runner does); (its token, a MAC header for its NIC)
    once serve has synced the change."""
    svc = srv.svc
    _build, token = svc.store.arm(name, svc.key, 600)
    _synced(srv)
    return token, f"eth0 {svc.store.get(name).node.facts.macs()[0]}"


def _synced(srv) -> None:
    want = srv.svc.store.generation()
    while requests.get(srv.http + "/healthz", timeout=10).json()["bootcache"]["synced_generation"] < want:
        pass


def _fetch(srv, token: str, *macs: str) -> requests.Response:
    return requests.get(f"{srv.http}/ks/{token}", timeout=30,
                        headers={f"X-RHN-Provisioning-MAC-{i}": m for i, m in enumerate(macs)})


def test_a_kickstart_fetch_is_answered_by_the_front_once_recorded(srv):
    token, mac = _armed(srv, "rhvnode3")
    want = srv.svc.renderer.render_build(srv.svc.store.active_build("rhvnode3"), "kickstart").text
    deadline = time.monotonic() + 30
    before = _http(srv)["answered_by_front"]
    while True:  # the refresher renders the node's kickstart right after it syncs the arm
        got = _fetch(srv, token, mac)
        assert got.status_code == 200 and got.text == want
        if _http(srv)["answered_by_front"] > before or time.monotonic() > deadline:
            break
    assert _http(srv)["answered_by_front"] == before + 1, "the front never answered the kickstart"
    build = srv.svc.store.active_build("rhvnode3")
    fetched = [e for e in srv.svc.store.events("rhvnode3") if e.kind == "ks-fetched"]
    assert build.ks_fetched_at is not None and fetched[-1].message == "kickstart fetched by 127.0.0.1"
    # twenty installers at once: every one answered, every fetch recorded
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: _fetch(srv, token, mac), range(20)))
    assert all(r.status_code == 200 and r.text == want for r in replies)
    assert len([e for e in srv.svc.store.events("rhvnode3") if e.kind == "ks-fetched"]) == len(fetched) + 20


def test_what_the_front_cannot_vouch_for_is_denied_by_flask_as_before(srv):
    token, mac = _armed(srv, "rhvnode3")
    other = f"eth0 {srv.svc.store.get('rhvnode4').node.facts.macs()[0]}"
    assert _fetch(srv, token, mac).status_code == 200
    before = _http(srv)
    assert _fetch(srv, token).status_code == 403  # no MAC header
    assert _fetch(srv, token, mac, other).status_code == 403  # another node's MAC
    assert _fetch(srv, token, "eth0 nonsense").status_code == 403
    assert _fetch(srv, token[:-2] + "xx", mac).status_code == 404
    assert _http(srv)["answered_by_front"] == before["answered_by_front"]
    denied = [e.message for e in srv.svc.store.events("rhvnode3") if e.kind == "ks-denied"]
    assert len(denied) == 3 and "no X-RHN-Provisioning-MAC header" in denied[0]
    srv.svc.store.set_boot_local(srv.svc.store.active_build("rhvnode3").id)  # `installed`, from elsewhere
    _synced(srv)
    assert _fetch(srv, token, mac).status_code == 403  # the cached kickstart is no longer good


def test_media_is_sent_by_the_front_with_the_headers_flask_sends(srv):
    root = srv.root / "media" / "el9"
    (root / "repodata").mkdir(parents=True)
    data = os.urandom(3 * 1024 * 1024 + 17)
    (root / "install.img").write_bytes(data)
    (root / "repodata" / "primary.xml.gz").write_bytes(b"\x1f\x8b" + os.urandom(100))
    (srv.root / "outside").write_bytes(b"secret")
    (root / "escape").symlink_to(srv.root / "outside")
    flask = create_app(srv.svc.cfg, store=srv.svc.store, renderer=srv.svc.renderer, admin_token="t" * 20,
                       secret_key="k" * 32).test_client()
    url = f"{srv.http}/media/el9"
    before = _http(srv)["answered_by_front"]
    cases = [({}, 200, data), ({"Range": "bytes=100-1099"}, 206, data[100:1100]),
             ({"Range": "bytes=-5"}, 206, data[-5:]), ({"Range": f"bytes={len(data) - 3}-"}, 206, data[-3:])]
    for headers, status, body in cases:
        got = requests.get(f"{url}/install.img", headers=headers, timeout=60)
        want = flask.get("/media/el9/install.img", headers=headers)
        assert (got.status_code, got.content) == (status, body) and want.status_code == status
        for field in ("Content-Length", "Content-Type", "ETag", "Last-Modified", "Accept-Ranges", "Cache-Control",
                      "Content-Range", "Content-Disposition"):
            assert got.headers.get(field) == want.headers.get(field), (headers, field)
    assert _http(srv)["answered_by_front"] - before == len(cases)
    gz = requests.get(f"{url}/repodata/primary.xml.gz", timeout=10)
    assert gz.headers["Content-Type"] == "application/gzip" and "Content-Encoding" not in gz.headers
    etag = requests.get(f"{url}/install.img", headers={"Range": "bytes=0-0"}, timeout=10).headers["ETag"]
    before = _http(srv)
    assert requests.get(f"{url}/install.img", headers={"If-None-Match": etag}, timeout=10).status_code == 304
    multi = {"Range": "bytes=0-1,5-6"}  # several ranges: whatever Flask answers (werkzeug: 416)
    assert requests.get(f"{url}/install.img", headers=multi, timeout=10).status_code == \
        flask.get("/media/el9/install.img", headers=multi).status_code
    assert requests.get(f"{url}/install.img", headers={"Range": f"bytes={len(data)}-"}, timeout=10).status_code == 416
    for refused in ("escape", "../outside", "nothing"):
        assert requests.get(f"{url}/{refused}", timeout=10).status_code == 404, refused
    after = _http(srv)  # each of those went to Flask (and so did the two /healthz)
    assert after["answered_by_front"] == before["answered_by_front"]
    assert after["handed_to_wsgi"] - before["handed_to_wsgi"] == 3 + 3 + 1


def test_a_media_download_to_a_slow_reader_goes_on_while_others_are_answered(srv):
    (srv.root / "media" / "big.img").write_bytes(data := os.urandom(32 * 1024 * 1024))
    with socket.create_connection(("127.0.0.1", _port(srv)), timeout=60) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.sendall(b"GET /media/big.img HTTP/1.1\r\nHost: x\r\n\r\n")
        received = slow.recv(1024)  # it has started, and stalls with its buffers full
        for _ in range(20):  # the front's one thread keeps answering
            assert requests.get(srv.http + GRUB, timeout=10).status_code == 200
        head_len = received.index(b"\r\n\r\n") + 4
        while len(received) < head_len + len(data):
            chunk = slow.recv(1 << 20)
            assert chunk, "the download stopped"
            received += chunk
    assert received[head_len:] == data


def test_media_downloads_at_once_arrive_whole_and_their_connections_go_on(srv):
    """The sender threads have the kernel copy each file; the connection then comes back to the
    loop: a keep-alive one answers its next request, a `Connection: close` one is closed after it."""
    (srv.root / "media" / "a.img").write_bytes(data := os.urandom(8 * 1024 * 1024 + 5))
    results: list = [None] * 6

    def download(i: int) -> None:
        with requests.Session() as http:  # keep-alive: one connection for both requests
            got = http.get(f"{srv.http}/media/a.img", timeout=60)
            then = http.get(srv.http + GRUB, timeout=10)
            results[i] = (got.status_code, got.content == data, then.status_code)

    threads = [threading.Thread(target=download, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [(200, True, 200)] * len(results)
    with socket.create_connection(("127.0.0.1", _port(srv)), timeout=60) as c:  # a pipelined request after
        c.sendall(b"GET /media/a.img HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"  # a `close` one is
                  b"GET " + GRUB.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")  # not answered
        received = b""
        while chunk := c.recv(1 << 20):  # ends: the front closes once the file is out
            received += chunk
    assert received[received.index(b"\r\n\r\n") + 4:] == data


def test_the_recorder_commits_fetches_together_and_reports_a_failed_commit():
    calls, done = [], []
    entered, proceed = threading.Semaphore(0), threading.Semaphore(0)

    class Store:
        def record_ks_fetches(self, fetches):
            entered.release()
            assert proceed.acquire(timeout=30)
            calls.append(fetches)
            if len(calls) == 2:
                raise OSError("disk gone")
            return [b != 3 for b, _, _ in fetches]  # the store's own check refuses build 3

    rec = Recorder(Store(), done.append)
    rec.start()
    fetch = partial(Fetch, 0, None, macs=["m"], head_len=1, response=b"", keep=True)
    rec.put(fetch(1, "a"))
    assert entered.acquire(timeout=30)  # the writer holds the first fetch's commit open
    for i in range(2, 6):
        rec.put(fetch(i, "b"))  # these queue up meanwhile
    proceed.release()
    assert entered.acquire(timeout=30)
    proceed.release()  # the second commit fails
    rec.put(fetch(3, "c"))
    assert entered.acquire(timeout=30)
    proceed.release()
    while len(done) < 6:
        time.sleep(0.01)
    rec.stop()
    assert calls == [[(1, "a", ["m"])], [(i, "b", ["m"]) for i in range(2, 6)], [(3, "c", ["m"])]]
    assert [f.recorded for f in done] == [True, False, False, False, False, False]


def test_the_store_checks_each_fetch_again_when_it_records_them(tmp_path):
    svc = services.build(config_mod.load(write_config(tmp_path)), bootcheck=False)
    try:
        svc.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
        b3, _ = svc.store.arm("rhvnode3", svc.key, 600)
        b4, _ = svc.store.arm("rhvnode4", svc.key, 600)
        m3, m4 = (svc.store.get(n).node.facts.macs()[0] for n in ("rhvnode3", "rhvnode4"))
        svc.store.set_boot_local(b4.id)
        passed = svc.store.record_ks_fetches([(b3.id, "ok", [m3]), (b3.id, "foreign", [m3, m4]),
                                              (b3.id, "unknown MAC", ["02:00:00:00:00:99"]), (b4.id, "installed", [m4]),
                                              (9999, "no build", [m3])])
        assert passed == [True, False, False, False, False]
        assert [e.message for e in svc.store.events("rhvnode3") if e.kind == "ks-fetched"] == ["ok"]
        assert not [e for e in svc.store.events("rhvnode4") if e.kind == "ks-fetched"]
        assert svc.store.active_build("rhvnode3").ks_fetched_at is not None
    finally:
        svc.close()


@pytest.mark.parametrize("head,parsed", [
    (b"GET /boot/ipxe?mac=a HTTP/1.1\r\nHost: x", ("/boot/ipxe", "mac=a", True, False, [], None, False)),
    (b"GET /boot/grub/a%2Db HTTP/1.0", ("/boot/grub/a-b", "", False, True, [], None, False)),
    (b"GET /x HTTP/1.0\r\nConnection: Keep-Alive", ("/x", "", True, True, [], None, False)),
    (b"GET /x HTTP/1.1\r\nconnection: upgrade, close", ("/x", "", False, False, [], None, False)),
    (b"GET /x HTTP/1.1\r\nContent-Length: 0", ("/x", "", True, False, [], None, False)),
    (b"GET /ks/t HTTP/1.1\r\nX-RHN-Provisioning-MAC-0: eth0 AA:bb\r\nx-rhn-provisioning-mac-1:  ens1 cc ",
     ("/ks/t", "", True, False, ["eth0 AA:bb", "ens1 cc"], None, False)),
    (b"GET /m HTTP/1.1\r\nRange: bytes=0-9\r\nIf-None-Match: \"x\"", ("/m", "", True, False, [], "bytes=0-9", True)),
    (b"GET /m HTTP/1.1\r\nRange: bytes=0-1\r\nRange: bytes=2-3", None),  # two Range headers
    (b"GET /x HTTP/1.1\r\nContent-Length: 5", None),  # a body: waitress reads it
    (b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked", None),
    (b"POST /x HTTP/1.1", None),
    (b"HEAD /x HTTP/1.1", None),
    (b"GET http://h/x HTTP/1.1", None),  # absolute form
    (b"GET /x HTTP/2.0", None),
    (b"GET /x HTTP/1.1\r\n folded: header", None),
    (b"GET /x HTTP/1.1\r\nno-colon", None),
    (b"GET /x\xff HTTP/1.1", ("/x\xff", "", True, False, [], None, False)),  # latin-1, as waitress hands Flask the path
    (b"GET /x?\xff HTTP/1.1", None),
])
def test_only_a_plain_get_is_read_by_the_front(head, parsed):
    assert parse_head(head) == parsed


@pytest.mark.parametrize("value,size,span", [
    (None, 10, (0, 9)), (None, 0, None), ("bytes=0-0", 10, (0, 0)), ("bytes=2-", 10, (2, 9)),
    ("bytes=5-100", 10, (5, 9)), ("bytes=-3", 10, (7, 9)), ("bytes=-30", 10, (0, 9)), ("BYTES = 1-2", 10, (1, 2)),
    ("bytes=10-", 10, None), ("bytes=3-2", 10, None), ("bytes=-0", 10, None), ("bytes=0-1,4-5", 10, None),
    ("items=0-1", 10, None), ("bytes=a-b", 10, None), ("bytes=-", 10, None), ("bytes=1", 10, None),
])
def test_the_front_serves_one_satisfiable_range_and_leaves_the_rest_to_flask(value, size, span):
    assert byte_range(value, size) == span


@pytest.mark.parametrize("path,shown", [
    ("/ks/AbCdEf0123456789xyz", "/ks/********"), ("/api/v1/callback/Tok_en-1/installed", "/api/v1/callback/********/installed"),
    ("/api/v1/collect/secret", "/api/v1/collect/********"), ("/boot/ipxe", "/boot/ipxe"), ("/media/x/ks/y", "/media/x/ks/y"),
])
def test_the_access_log_never_shows_a_token(path, shown):
    assert loggable_path(path) == shown
