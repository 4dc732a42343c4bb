"""The HTTP edge of `serve` against a real server: waitress behind the gate (web/gate.py). No request
can stop HTTP; a request head has a deadline; one source address cannot hold every connection;
media are served whole and by range; X-Forwarded-For counts only from a trusted proxy."""

from __future__ import annotations

import os
import socket
import threading

import pytest
import requests

from provision import config as config_mod
from provision import services
from provision.domain import load_yaml, parse_nodes
from provision.web import create_app
from provision.web.accesslog import loggable_path
from provision.web.gate import Gate

from .conftest import EXAMPLE, start_server, write_config

MAC = "0c:c4:7a:3b:03:01"
GRUB = f"/boot/grub/grub.cfg-01-{MAC.replace(':', '-')}"


@pytest.fixture
def srv(tmp_path):
    svc = services.build(config_mod.load(write_config(tmp_path)), bootcheck=False)
    svc.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    svc.close()
    gen = start_server(tmp_path, server_extra="http_channel_timeout = 5\nhttp_head_timeout = 1\n"
                                              "http_per_source_limit = 8\n")
    server = next(gen)
    yield server
    gen.close()


def _port(server) -> int:
    return int(server.http.rsplit(":", 1)[1])


def _raw(server, request: bytes, source: str = "127.0.0.1") -> bytes:
    """One request on its own connection; the whole answer (the connection is closed after it)."""
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=30, source_address=(source, 0)) as c:
        c.sendall(request)
        out = b""
        while chunk := c.recv(65536):
            out += chunk
    return out


def _still_serving(server, source: str = "127.0.0.1") -> None:
    assert requests.get(server.http + "/healthz", timeout=10).json()["status"] == "ok"
    answer = _raw(server, f"GET {GRUB} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), source)
    assert answer.startswith(b"HTTP/1.1 200") and b"local boot" in answer


@pytest.mark.parametrize("request_line, status", [
    (b"GET /media/%00 HTTP/1.1", b"404"),
    (b"GET /media/" + b"a" * 300 + b" HTTP/1.1", b"404"),
    (b"GET /media/" + b"/".join([b"d" * 250] * 20) + b" HTTP/1.1", b"404"),  # longer than PATH_MAX
    (b"GET /media/a%0Ab HTTP/1.1", b"404"),
    (b"GET /boot/%00 HTTP/1.1", b"404"),
    (b"GET /boot/grub/grub.cfg-01-0c-c4-7a-3b-03-01%0A HTTP/1.1", b"404"),
])
def test_no_request_stops_http(srv, request_line, status):
    """Each of these once raised in the front's only thread, and every later request hung."""
    answer = _raw(srv, request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    _still_serving(srv)


def test_a_range_with_non_ascii_digits_is_answered_and_serving_goes_on(srv):
    (srv.root / "media" / "f.img").write_bytes(b"x" * 100)
    for value in ("bytes=²-", "bytes=-²", "bytes=٣-5"):
        answer = _raw(srv, f"GET /media/f.img HTTP/1.1\r\nHost: x\r\nRange: {value}\r\nConnection: close\r\n\r\n"
                      .encode())
        assert answer.split(b" ", 2)[1] in (b"200", b"416"), answer[:200]
    _still_serving(srv)


def test_a_request_head_has_a_deadline(srv):
    """A partial head, a byte every 0.3 s (keeps an inactivity timeout happy): closed by the gate
    once http_head_timeout (1 s here) has passed since the connection was accepted."""
    with socket.create_connection(("127.0.0.1", _port(srv)), timeout=30) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = threading.Event()

        def drip():
            try:
                while not closed.is_set():
                    c.sendall(b"X")
                    closed.wait(0.3)
            except OSError:
                pass

        t = threading.Thread(target=drip, daemon=True)
        t.start()
        try:
            data = c.recv(1024)
        except ConnectionResetError:
            data = b""
        closed.set()
        t.join(10)
    assert data == b""  # closed without an answer
    assert requests.get(srv.http + "/healthz", timeout=10).json()["http"]["refused"]["head-timeout"] >= 1


def test_one_source_holds_at_most_its_limit_and_others_are_served(srv):
    """http_per_source_limit = 8: 8 idle connections from 127.0.0.2 are held, the 9th is closed at
    once; 127.0.0.1 is served meanwhile, and a slot given back is usable again."""
    held = [socket.create_connection(("127.0.0.1", _port(srv)), timeout=30, source_address=("127.0.0.2", 0))
            for _ in range(8)]
    try:
        for c in held:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a partial head: waiting in the gate
        with socket.create_connection(("127.0.0.1", _port(srv)), timeout=30, source_address=("127.0.0.2", 0)) as c:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                assert c.recv(1024) == b""
            except ConnectionResetError:
                pass
        _still_serving(srv, "127.0.0.1")
        held.pop().close()
        _still_serving(srv, "127.0.0.1")
        answer = b""
        for _ in range(100):  # the slot is given back once the gate has seen the close
            try:
                answer = _raw(srv, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "127.0.0.2")
            except ConnectionResetError:
                answer = b""
            if answer:
                break
            threading.Event().wait(0.02)
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        for c in held:
            c.close()
    assert requests.get(srv.http + "/healthz", timeout=10).json()["http"]["refused"]["per-source"] >= 1


def test_hundreds_of_slow_connections_from_one_place_do_not_lock_out_the_rest(srv):
    """410 slowloris connections (the count that once failed /healthz 13 of 14 times)."""
    slow = []
    try:
        for _ in range(410):
            c = socket.create_connection(("127.0.0.1", _port(srv)), timeout=30, source_address=("127.0.0.3", 0))
            c.sendall(b"GET / HTTP/1.1\r\n")
            slow.append(c)
        for _ in range(5):
            _still_serving(srv, "127.0.0.1")
    finally:
        for c in slow:
            c.close()


def test_media_are_sent_whole_and_by_range_with_flasks_headers(srv):
    root = srv.root / "media" / "el9"
    (root / "repodata").mkdir(parents=True)
    data = os.urandom(3 * 1024 * 1024 + 17)
    (root / "install.img").write_bytes(data)
    (root / "repodata" / "primary.xml.gz").write_bytes(b"\x1f\x8b" + os.urandom(100))
    (srv.root / "outside").write_bytes(b"secret")
    (root / "escape").symlink_to(srv.root / "outside")
    url = f"{srv.http}/media/el9"
    cases = [({}, 200, data), ({"Range": "bytes=100-1099"}, 206, data[100:1100]),
             ({"Range": "bytes=-5"}, 206, data[-5:]), ({"Range": f"bytes={len(data) - 3}-"}, 206, data[-3:])]
    for headers, status, body in cases:
        got = requests.get(f"{url}/install.img", headers=headers, timeout=60)
        assert (got.status_code, got.content) == (status, body)
        assert got.headers["Accept-Ranges"] == "bytes" and got.headers["ETag"]
    gz = requests.get(f"{url}/repodata/primary.xml.gz", timeout=10)
    assert gz.headers["Content-Type"] == "application/gzip" and "Content-Encoding" not in gz.headers
    etag = requests.get(f"{url}/install.img", headers={"Range": "bytes=0-0"}, timeout=10).headers["ETag"]
    assert requests.get(f"{url}/install.img", headers={"If-None-Match": etag}, timeout=10).status_code == 304
    assert requests.get(f"{url}/install.img", headers={"Range": f"bytes={len(data)}-"}, timeout=10).status_code == 416
    for refused in ("escape", "../outside", "nothing"):
        assert requests.get(f"{url}/{refused}", timeout=10).status_code == 404, refused


def test_a_slow_media_reader_does_not_hold_up_the_rest(srv):
    (srv.root / "media" / "big.img").write_bytes(data := os.urandom(32 * 1024 * 1024))
    with socket.create_connection(("127.0.0.1", _port(srv)), timeout=60) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.sendall(b"GET /media/big.img HTTP/1.1\r\nHost: x\r\n\r\n")
        received = slow.recv(1024)  # it has started, and stalls with its buffers full
        for _ in range(20):
            assert requests.get(srv.http + GRUB, timeout=10).status_code == 200
        head_len = received.index(b"\r\n\r\n") + 4
        while len(received) < head_len + len(data):
            chunk = slow.recv(1 << 20)
            assert chunk, "the download stopped"
            received += chunk
    assert received[head_len:] == data


def test_a_failure_on_one_connection_does_not_end_the_gate(monkeypatch):
    """The gate's guard: a bug met on one connection closes that connection, and the loop goes on."""
    listener = socket.create_server(("127.0.0.1", 0))
    gate = Gate(listener, limit=50, per_source=50, head_timeout=5)
    real, calls = gate._check, []

    def failing_once(fd, events):
        calls.append(fd)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(fd, events)

    monkeypatch.setattr(gate, "_check", failing_once)
    t = threading.Thread(target=gate.serve_forever, daemon=True)
    t.start()
    port = listener.getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET / HTTP/1.1\r\n\r\n")
            try:
                assert c.recv(10) == b""  # this one is closed
            except ConnectionResetError:
                pass
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET / HTTP/1.1\r\n\r\n")
            ready = threading.Event()
            for _ in range(200):
                try:
                    conn, addr = gate.take()
                    break
                except BlockingIOError:
                    ready.wait(0.02)
            else:
                raise AssertionError("the second connection never reached waitress's side")
            assert conn.recv(100, socket.MSG_PEEK).startswith(b"GET /")
            conn.close()
        assert t.is_alive()
    finally:
        gate.stop()
        t.join(10)


def _app(tmp_path, **server):
    extra = "".join(f"{k} = {v}\n" for k, v in server.items())
    cfg = config_mod.load(write_config(tmp_path, server_extra=extra))
    svc = services.build(cfg, bootcheck=False)
    return create_app(svc, admin_token="t" * 20, secret_key="k" * 32)


def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path):
    from flask import request
    app = _app(tmp_path, trusted_proxies='["10.9.0.0/24"]')

    @app.get("/whoami")
    def whoami():
        return f"{request.remote_addr} {request.scheme}"

    client = app.test_client()
    forged = {"X-Forwarded-For": "192.0.2.10", "X-Forwarded-Proto": "https"}
    assert client.get("/whoami", headers=forged, environ_base={"REMOTE_ADDR": "10.9.1.5"}).text == "10.9.1.5 http"
    assert client.get("/whoami", headers=forged, environ_base={"REMOTE_ADDR": "10.9.0.7"}).text == "192.0.2.10 https"
    two_hops = {"X-Forwarded-For": "198.51.100.1, 192.0.2.10"}  # nginx appends the client it saw: the last hop
    assert client.get("/whoami", headers=two_hops, environ_base={"REMOTE_ADDR": "10.9.0.7"}).text.split()[0] == \
        "192.0.2.10"
    (tmp_path / "plain").mkdir()
    plain = _app(tmp_path / "plain")  # no trusted_proxies: the headers count from nobody

    @plain.get("/whoami")
    def whoami2():
        return request.remote_addr

    assert plain.test_client().get("/whoami", headers=forged, environ_base={"REMOTE_ADDR": "10.9.0.7"}).text == \
        "10.9.0.7"


@pytest.mark.parametrize("path, shown", [
    ("/ks/AbCdEf0123456789xyz", "/ks/********"), ("/api/v1/callback/Tok_en-1/installed", "/api/v1/callback/********/installed"),
    ("/api/v1/collect/secret", "/api/v1/collect/********"), ("/boot/ipxe", "/boot/ipxe"), ("/media/x/ks/y", "/media/x/ks/y"),
])
def test_the_access_log_never_shows_a_token(path, shown):
    assert loggable_path(path) == shown


def test_the_gate_readies_connections_on_every_lane_so_waitress_takes_many_a_turn():
    """waitress accepts once per listening socket per loop turn: with 16 lanes a turn takes 16 of
    the connections that are ready, each lane's descriptor readable for one of them."""
    import select as select_mod

    listener = socket.create_server(("127.0.0.1", 0))
    gate = Gate(listener, limit=100, per_source=100, head_timeout=5, lanes=16)
    t = threading.Thread(target=gate.serve_forever, daemon=True)
    t.start()
    port = listener.getsockname()[1]
    clients = []
    try:
        for _ in range(40):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(c)
        lanes = gate.listening_sockets()
        fds = [lane.fileno() for lane in lanes]
        assert len(set(fds)) == 16
        readable: set[int] = set()
        while len(readable) < 16:  # every lane becomes readable: the gate spread them round robin
            r, _, _ = select_mod.select(fds, [], [], 10)
            assert r, "no lane became readable"
            readable |= set(r)
            if len(readable) < 16:
                threading.Event().wait(0.01)
        taken = [lane.accept() for lane in lanes]  # one turn of waitress's loop: one accept per lane
        assert len(taken) == 16 and all(conn.recv(20, socket.MSG_PEEK).startswith(b"GET /healthz") for conn, _ in taken)
        rest = []
        for _ in range(200):
            for lane in lanes:
                try:
                    rest.append(lane.accept())
                except BlockingIOError:
                    pass
            if len(taken) + len(rest) == 40:
                break
            threading.Event().wait(0.01)
        assert len(taken) + len(rest) == 40
        with pytest.raises(BlockingIOError):  # all taken: no lane has one left
            lanes[0].accept()
        for conn, _ in taken + rest:
            conn.close()
    finally:
        for c in clients:
            c.close()
        gate.stop()
        t.join(10)
