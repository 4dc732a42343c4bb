"""Load generators and peers for `make bench`: wrk (HTTP, C, its own threads) with a Lua script that
asks a random node's per-MAC path per request; a selectors-based TFTP client that keeps N
transfers in flight and times each one; nginx and in.tftpd (tftpd-hpa) as the peers, serving the
same bytes from files."""

from __future__ import annotations

import re
import selectors
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

WRK_LUA = """
local paths, names, values, built = {}, {}, {}, {}
for line in io.lines(os.getenv("BENCH_PATHS")) do
  local path, name, value = line:match("^([^\t]+)\t([^:]+): (.*)$")
  paths[#paths + 1] = path or line
  names[#paths], values[#paths] = name, value
end
math.randomseed(os.time())
request = function()
  local i = math.random(#paths)
  if not built[i] then  -- wrk.headers (Host) is set by now, not when the script is loaded
    local headers = {}
    for k, v in pairs(wrk.headers) do headers[k] = v end
    if names[i] then headers[names[i]] = values[i] end
    built[i] = wrk.format("GET", paths[i], headers)
  end
  return built[i]
end
"""


def wrk(url: str, paths_file: Path, *, connections: int = 200, seconds: int = 10, threads: int = 2) -> dict:
    """wrk -c<connections> with random paths from `paths_file` (a line: a path, or a path, a tab and
    one `Header: value` to send with it): requests/s, p50/p99 ms, errors."""
    lua = paths_file.with_suffix(".lua")
    lua.write_text(WRK_LUA)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua),
                          url], capture_output=True, text=True, env={"BENCH_PATHS": str(paths_file)},
                         timeout=seconds + 60).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    kinds = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)) if sock else {}
    if non2xx:
        kinds["non-2xx"] = int(non2xx.group(1))
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": ms("50%"), "p99": ms("99%"),
            "errors": sum(kinds.values()), "error_kinds": {k: v for k, v in kinds.items() if v}}


def nginx(root: Path, port: int, tmp: Path) -> subprocess.Popen:
    conf = tmp / "nginx.conf"
    conf.write_text(f"""daemon off; user root; worker_processes 2; pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err; events {{ worker_connections 4096; }}
http {{ access_log off; default_type text/plain; keepalive_requests 100000; sendfile on; tcp_nopush on;
  client_body_temp_path {tmp}/nb; proxy_temp_path {tmp}/np; fastcgi_temp_path {tmp}/nf;
  uwsgi_temp_path {tmp}/nu; scgi_temp_path {tmp}/ns;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
    proc = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-e", str(tmp / "nginx.err")])
    wait_port(port)
    return proc


def in_tftpd(root: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([shutil.which("in.tftpd") or "/usr/sbin/in.tftpd", "-L", "-u", "root", "-s", str(root),
                             "-a", f"127.0.0.1:{port}"])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tftp_fetch_all(port: int, names: list[str], *, concurrency: int = 200, timeout: float = 5.0) -> dict:
    """Fetch every name once (plain RFC 1350, 512-byte blocks), `concurrency` transfers in flight;
    returns the latencies (ms, request sent -> last block received) and the failures."""
    sel = selectors.DefaultSelector()
    pending = list(reversed(names))
    latencies: list[float] = []
    failures = 0
    live: dict[socket.socket, list] = {}  # sock -> [start, next expected block, deadline, request, resend at]

    def start() -> None:
        name = pending.pop()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        rrq = struct.pack("!H", 1) + name.encode() + b"\0octet\0"
        s.sendto(rrq, ("127.0.0.1", port))
        now = time.perf_counter()
        live[s] = [now, 1, now + timeout, rrq, now + 1.0]
        sel.register(s, selectors.EVENT_READ)

    def finish(s: socket.socket, ok: bool) -> None:
        nonlocal failures
        st = live.pop(s)
        sel.unregister(s)
        s.close()
        if ok:
            latencies.append((time.perf_counter() - st[0]) * 1000)
        else:
            failures += 1

    while pending or live:
        while pending and len(live) < concurrency:
            start()
        for key, _ in sel.select(0.05):
            s = key.fileobj
            try:
                data, addr = s.recvfrom(2048)
            except BlockingIOError:
                continue
            op, block = struct.unpack("!HH", data[:4])
            st = live[s]
            if op != 3:
                finish(s, False)
                continue
            s.sendto(struct.pack("!HH", 4, block), addr)
            st[3] = b""  # answered: never send the request again
            if block == st[1]:
                st[1] += 1
                if len(data) - 4 < 512:
                    finish(s, True)
        now = time.perf_counter()
        for s, st in live.items():  # no answer yet: send the request again after 1 s, as PXE firmware does
            if st[1] == 1 and st[3] and now > st[4]:
                s.sendto(st[3], ("127.0.0.1", port))
                st[4] = now + 1.0
        for s in [s for s, st in live.items() if now > st[2]]:
            finish(s, False)
    sel.close()
    return {"latencies": latencies, "failures": failures}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
