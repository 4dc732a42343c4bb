"""Hostile clients against a real `provision serve` with its default limits: 1,000 slowloris
connections (a partial head, a byte every 5 s, reopened when closed) from 127.0.0.2 and a 3 s flood
of 2,000 half-open RRQs (half of them asking timeout=255) from 127.0.0.3. Meanwhile 127.0.0.1, a
node elsewhere, asks every 100 ms for /healthz, its per-MAC boot config over HTTP and the same over
TFTP; the worst answer time of each is the figure (target: within 1 s, nothing refused)."""

from __future__ import annotations

import http.client
import json
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from .__main__ import config
from .gen import nodes as gen_nodes
from .loads import free_port, wait_port
from .table import Row

SLOW = 1000
FLOOD, FLOOD_SECONDS = 2000, 3.0
WATCH_SECONDS = 8.0


def run() -> list[Row]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    with tempfile.TemporaryDirectory() as d:
        return _run(Path(d))


def _tftp_get(port: int, name: str, timeout: float = 5.0) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        s.sendto(struct.pack("!H", 1) + name.encode() + b"\0octet\0", ("127.0.0.1", port))
        block = 1
        while True:
            data, addr = s.recvfrom(2048)
            op, n = struct.unpack("!HH", data[:4])
            if op != 3 or n != block:
                return False
            s.sendto(struct.pack("!HH", 4, n), addr)
            if len(data) - 4 < 512:
                return True
            block += 1


def _http_get(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=("127.0.0.1", 0))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    finally:
        conn.close()


def _run(tmp: Path) -> list[Row]:
    http_port, tftp_port = free_port(), free_port(2)
    cfg = config(tmp, tftp_port, db="hostile.db", server=f"""http_bind = "127.0.0.1:{http_port}"
public_url = "http://127.0.0.1:{http_port}"
""")
    # the bench's config() raises tftp_per_source_sessions for its one-address clients: back to the default
    cfg.write_text(cfg.read_text().replace("tftp_per_source_sessions = 512\n", ""))
    data = gen_nodes(100)
    (tmp / "bmc.pw").write_text("x\n")
    for n in data["nodes"]:
        n["bmc"]["password_file"] = str(tmp / "bmc.pw")
    (tmp / "nodes.yaml").write_text(yaml.safe_dump(data))
    (tmp / "boot").mkdir(exist_ok=True)
    cli = [sys.executable, "-m", "provision", "--config", str(cfg)]
    subprocess.run(cli + ["node", "import", str(tmp / "nodes.yaml")], check=True, capture_output=True)
    serve = subprocess.Popen(cli + ["serve"], stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.log", "w"))
    mac = data["nodes"][0]["facts"]["nics"][0]["mac"].replace(":", "-")
    grub = f"grub.cfg-01-{mac}"
    stop = threading.Event()
    try:
        wait_port(http_port, 60)
        while True:
            try:
                if _http_get(http_port, "/healthz"):
                    break
            except OSError:
                time.sleep(0.05)
        worst = {"healthz": 0.0, "http": 0.0, "tftp": 0.0}
        failed = {"healthz": 0, "http": 0, "tftp": 0}

        def watch() -> None:
            end = time.monotonic() + WATCH_SECONDS
            while time.monotonic() < end:
                for what, ask in (("healthz", lambda: _http_get(http_port, "/healthz")),
                                  ("http", lambda: _http_get(http_port, f"/boot/grub/{grub}")),
                                  ("tftp", lambda: _tftp_get(tftp_port, grub))):
                    t0 = time.perf_counter()
                    try:
                        ok = ask()
                    except OSError:
                        ok = False
                    worst[what] = max(worst[what], time.perf_counter() - t0)
                    failed[what] += 0 if ok else 1
                stop.wait(0.1)

        def slowloris() -> None:
            conns: list[socket.socket | None] = [None] * SLOW
            opened = 0
            while not stop.is_set():
                for i in range(SLOW):
                    c = conns[i]
                    try:
                        if c is None:
                            c = socket.create_connection(("127.0.0.1", http_port), timeout=2,
                                                         source_address=("127.0.0.2", 0))
                            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                            conns[i] = c
                            opened += 1
                        else:
                            c.sendall(b"X")
                    except OSError:
                        if c is not None:
                            c.close()
                        conns[i] = None
                stop.wait(5.0)
            for c in conns:
                if c is not None:
                    c.close()

        def flood() -> None:
            socks = []
            t0 = time.monotonic()
            for i in range(FLOOD):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.3", 0))
                s.sendto(struct.pack("!H", 1) + grub.encode() + b"\0octet\0" + (b"timeout\x00255\x00" if i % 2 else b""),
                         ("127.0.0.1", tftp_port))
                socks.append(s)
                pause = t0 + (i + 1) * FLOOD_SECONDS / FLOOD - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            stop.wait(WATCH_SECONDS)
            for s in socks:
                s.close()

        attackers = [threading.Thread(target=slowloris, daemon=True), threading.Thread(target=flood, daemon=True)]
        for t in attackers:
            t.start()
        time.sleep(1.0)  # the attack is under way before the node starts asking
        watcher = threading.Thread(target=watch)
        watcher.start()
        watcher.join()
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
        conn.request("GET", "/healthz")
        health = json.loads(conn.getresponse().read())
        conn.close()
        stop.set()
        for t in attackers:
            t.join(30)
    finally:
        stop.set()
        serve.terminate()
        serve.wait(30)
    rows = [Row("hostile: what serve refused meanwhile (HTTP gate; TFTP)",
                f"{health['http']['refused']}; {health['tftp_refused']}")]
    for what, label in (("healthz", "/healthz"), ("http", "per-MAC boot config over HTTP"),
                        ("tftp", "per-MAC boot config over TFTP")):
        rows.append(Row(f"hostile: {SLOW} slowloris + {FLOOD} half-open RRQs in {FLOOD_SECONDS:.0f} s from one place; "
                        f"another place's {label}: worst answer",
                        f"{worst[what] * 1000:.0f} ms ({failed[what]} failed)", target="<= 1 s, 0 failed",
                        ok=worst[what] <= 1.0 and failed[what] == 0))
    return rows
