"""HTTP /media throughput: a 1 GB file to 16 curl clients at once through the documented nginx front
(docs/nginx/provision.conf: nginx sends media itself, by sendfile) beside nginx serving the same file
from a plain root, in the same run; and from `provision serve` alone (waitress), for reference."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.fakes.tls import make_tls
from tests.nginxfront import start_nginx

from .__main__ import config
from .loads import free_port, nginx, wait_port
from .table import Row

SIZE = int(os.environ.get("BENCH_MEDIA_MB", "1024")) << 20
CLIENTS = 16


def _fetch_all(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sS", "--max-time", "600", "-o", "/dev/null", "-w", "%{size_download}", url],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(CLIENTS)]
    failed = 0
    for p in procs:
        out, _ = p.communicate()
        failed += p.returncode != 0 or out.strip() != str(SIZE)
    return time.perf_counter() - t0, failed


def run(tmp: Path) -> list[Row]:
    media = tmp / "media" / "rhvh"
    media.mkdir(parents=True)
    with open(media / "big.img", "wb") as f:
        for _ in range(SIZE >> 24):
            f.write(os.urandom(1 << 24))
    http_port, ngx_port = free_port(), free_port()
    srv = subprocess.Popen([sys.executable, "-m", "provision", "--config", str(config(tmp, free_port(2))), "serve",
                            "--http", f"127.0.0.1:{http_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ngx = nginx(tmp, ngx_port, tmp)  # root: tmp, so the same /media/rhvh/big.img
    tls = make_tls(tmp / "tls")
    front = start_nginx(tmp / "front", f"127.0.0.1:{http_port}", tmp / "media", tls.cert, tls.key)
    try:
        wait_port(http_port, 60)
        results = {}
        for label, base in (("front", front.http), ("nginx", f"http://127.0.0.1:{ngx_port}"),
                            ("serve", f"http://127.0.0.1:{http_port}")):
            _fetch_all(f"{base}/media/rhvh/big.img")  # all from the page cache after this
            results[label] = _fetch_all(f"{base}/media/rhvh/big.img")
    finally:
        front.stop()
        srv.terminate()
        ngx.terminate()
        srv.wait(30)
        ngx.wait(30)
    (ours_t, ours_f), (peer_t, _), (alone_t, alone_f) = results["front"], results["nginx"], results["serve"]
    total = CLIENTS * SIZE / 1e6
    ratio = peer_t / ours_t
    return [Row(f"HTTP /media {SIZE >> 20} MB file to {CLIENTS} curl clients at once, through the nginx front: "
                "aggregate", f"{total / ours_t:,.0f} MB/s ({ours_f} failed)", f"nginx {total / peer_t:,.0f} MB/s",
                ratio=ratio, target=">= 0.8x nginx", ok=ratio >= 0.8 and not ours_f),
            Row("  the same from serve alone (waitress; no front)", f"{total / alone_t:,.0f} MB/s ({alone_f} failed)",
                ratio=peer_t / alone_t)]
