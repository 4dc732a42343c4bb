"""`make bench`: side-by-side benchmarks, printed as a table.

1. kickstart renders per second for 1,000 generated nodes (store -> context -> template), and
   the template step alone;
2. TFTP aggregate throughput, 16 concurrent 20 MB fetches with curl (blksize 1468), provision's
   server vs in.tftpd (tftpd-hpa) in the same run, as a ratio;
3. rebuild orchestration: 500 simulated nodes at --max-parallel 50 (bench/rebuild.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provision import config as config_mod
from provision import services
from provision.domain import parse_nodes
from provision.render.context import Secrets, build_context

from .gen import nodes as gen_nodes

REPO = Path(__file__).resolve().parents[1]
N_NODES = int(os.environ.get("BENCH_NODES", "1000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "16"))
SIZE_MB = int(os.environ.get("BENCH_SIZE_MB", "20"))


def free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tmp: Path, tftp_port: int = 6969) -> Path:
    cfg = tmp / "provision.toml"
    cfg.write_text(f"""[server]
tftp_bind = "127.0.0.1:{tftp_port}"
db_url = "sqlite:///{tmp}/bench.db"
admin_token_file = "{tmp}/admin.token"
secret_key_file = "{tmp}/secret.key"
[paths]
state_dir = "{tmp}/var"
bootfiles = "{tmp}/boot"
media = "{tmp}/media"
templates = "{REPO}"
""")
    return cfg


def bench_render(tmp: Path) -> list[tuple[str, str]]:
    svc = services.build(config_mod.load(config(tmp)))
    nodes = parse_nodes(gen_nodes(N_NODES))
    t0 = time.perf_counter()
    svc.store.import_nodes(nodes)
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    for n in nodes:
        svc.renderer.render(n.name, "kickstart")
    t_full = time.perf_counter() - t0
    env = svc.renderer.env
    ctxs = [(n.profile, build_context(n, n.facts, 1, svc.cfg, armed=True, secrets=Secrets(token="t" * 32),
                                      ssh_key=None)) for n in nodes]
    t0 = time.perf_counter()
    for profile, ctx in ctxs:
        env.get_template(f"{profile}.ks.j2").render(ctx)
    t_tpl = time.perf_counter() - t0
    svc.close()
    return [
        (f"import {N_NODES} nodes (one transaction)", f"{t_import:.2f} s"),
        (f"kickstart renders/s, store+context+template ({N_NODES} nodes)", f"{N_NODES / t_full:,.0f}"),
        ("kickstart renders/s, template only", f"{N_NODES / t_tpl:,.0f}"),
    ]


def fetch_all(port: int, name: str, out: Path) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sS", "--tftp-blksize", "1468", "-o", str(out / f"{i}.bin"),
                               f"tftp://127.0.0.1:{port}/{name}"]) for i in range(CLIENTS)]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"curl failed against port {port}: {codes}")
    return elapsed


def bench_tftp(tmp: Path) -> list[tuple[str, str]]:
    boot = tmp / "boot"
    boot.mkdir(exist_ok=True)
    loader = boot / "loader.efi"
    loader.write_bytes(os.urandom(SIZE_MB * 1024 * 1024))
    os.chmod(tmp, 0o755)
    os.chmod(boot, 0o755)
    os.chmod(loader, 0o644)
    digest = hashlib.sha256(loader.read_bytes()).hexdigest()
    ours, theirs = free_udp(), free_udp()
    cfg = config(tmp, ours)
    serve = subprocess.Popen([sys.executable, "-m", "provision", "--config", str(cfg), "serve",
                              "--http", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    serve.stdout.readline()
    hpa_bin = shutil.which("in.tftpd") or "/usr/sbin/in.tftpd"
    hpa = subprocess.Popen([hpa_bin, "-L", "-u", "nobody", "-s", str(boot), "-a", f"127.0.0.1:{theirs}"])
    time.sleep(0.5)
    rows = []
    try:
        results = {}
        for label, port in (("provision (tftpy)", ours), ("in.tftpd (tftpd-hpa)", theirs)):
            out = tmp / f"out-{port}"
            out.mkdir()
            results[label] = fetch_all(port, "loader.efi", out)
            for f in out.iterdir():
                if hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                    raise SystemExit(f"{label}: corrupted transfer {f}")
            shutil.rmtree(out)
        total = CLIENTS * SIZE_MB
        for label, t in results.items():
            rows.append((f"TFTP {CLIENTS}x{SIZE_MB} MB, {label}", f"{t:.2f} s, {total / t:.1f} MB/s"))
        ratio = results["in.tftpd (tftpd-hpa)"] / results["provision (tftpy)"]
        rows.append(("TFTP throughput ratio provision / tftpd-hpa", f"{ratio:.2f}x"))
    finally:
        serve.terminate()
        hpa.terminate()
        serve.wait(10)
        hpa.wait(10)
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "r").mkdir()
        (tmp / "t").mkdir()
        rows = bench_render(tmp / "r") + bench_tftp(tmp / "t")
    from .rebuild import run as bench_rebuild

    rows += bench_rebuild()
    width = max(len(k) for k, _ in rows)
    print(f"{'benchmark'.ljust(width)}  result")
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")


if __name__ == "__main__":
    main()
