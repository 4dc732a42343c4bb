"""`make bench`: every scale figure beside its peer in the same run, with its target.

1. kickstart renders per second for 1,000 generated nodes (store -> context -> template);
2. a 5,000-node fleet on a real `provision serve` (bench/fleet.py): import, start-up, RSS, per-MAC
   configs over HTTP (wrk, vs nginx) and TFTP (vs in.tftpd), kickstart fetches, state change;
3. TFTP aggregate throughput, 16 and 64 concurrent 20 MB fetches with curl (blksize 1468), three
   rounds each with the two servers taking turns, and 200 concurrent 2 MB fetches for failures,
   provision vs in.tftpd (tftpd-hpa);
4. rebuild orchestration: 200 simulated nodes at --max-parallel 50, 20-30 s installs (bench/rebuild.py);
5. hostile clients: 1,000 slow HTTP connections and a flood of half-open RRQs from one place, while
   another place's /healthz, boot config and TFTP fetch are timed (bench/hostile.py).
Clients (curl, wrk, the Python TFTP and HTTP clients) run on the same machine as the servers and
share its cores: the header says how many.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provision import config as config_mod
from provision import services
from provision.domain import parse_nodes

from .gen import nodes as gen_nodes
from .loads import free_port, in_tftpd
from .table import Row, render

REPO = Path(__file__).resolve().parents[1]
N_NODES = int(os.environ.get("BENCH_NODES", "1000"))
SIZE_MB = int(os.environ.get("BENCH_SIZE_MB", "20"))


def config(tmp: Path, tftp_port: int = 6969, server: str = "", db: str = "bench.db", paths: str = "") -> Path:
    """A provision.toml under `tmp`; `server` adds lines to [server], `paths` to [paths]."""
    cfg = tmp / "provision.toml"
    cfg.write_text(f"""[server]
{server}
tftp_bind = "127.0.0.1:{tftp_port}"
db_url = "sqlite:///{tmp}/{db}"
admin_token_file = "{tmp}/admin.token"
secret_key_file = "{tmp}/secret.key"
tftp_max_sessions = 512
tftp_per_source_sessions = 512
[paths]
state_dir = "{tmp}/var"
bootfiles = "{tmp}/boot"
media = "{tmp}/media"
templates = "{REPO}"
{paths}
""")
    return cfg


def bench_render(tmp: Path) -> list[Row]:
    svc = services.build(config_mod.load(config(tmp)))
    nodes = parse_nodes(gen_nodes(N_NODES))
    svc.store.import_nodes(nodes)
    t0 = time.perf_counter()
    for n in nodes:
        svc.renderer.render(n.name, "kickstart")
    t_full = time.perf_counter() - t0
    svc.close()
    return [Row(f"kickstart renders/s, store + context + template ({N_NODES} nodes)", f"{N_NODES / t_full:,.0f}")]


def fetch_all(port: int, name: str, out: Path, clients: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sS", "--max-time", "300", "--tftp-blksize", "1468", "-o",
                               str(out / f"{i}.bin"), f"tftp://127.0.0.1:{port}/{name}"],
                              stderr=subprocess.DEVNULL) for i in range(clients)]
    failed = sum(1 for p in procs if p.wait() != 0)
    return time.perf_counter() - t0, failed


def _check(out: Path, digest: str) -> int:
    bad = sum(1 for f in out.iterdir() if hashlib.sha256(f.read_bytes()).hexdigest() != digest)
    shutil.rmtree(out)
    return bad


ROUNDS = int(os.environ.get("BENCH_TFTP_ROUNDS", "3"))


def _start_tftp(label: str, tmp: Path, boot: Path, port: int) -> subprocess.Popen:
    """Either server, started the same way as far as the clients can tell: both are timed from
    the moment a probe fetch of a small file succeeded (the first RRQs then reach a server that is
    fully up, pump processes and all), and after os.sync(), so that neither pays for writing back
    the previous round's downloads."""
    if label == "provision":
        srv = subprocess.Popen([sys.executable, "-m", "provision", "--config", str(config(tmp, port)), "serve",
                                "--http", "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        srv = in_tftpd(boot, port)
    for _ in range(300):
        probe = subprocess.run(["curl", "-sS", "--max-time", "2", "-o", "/dev/null",
                                f"tftp://127.0.0.1:{port}/probe.bin"], stderr=subprocess.DEVNULL)
        if probe.returncode == 0:
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"{label}: no TFTP answer on port {port}")
    os.sync()
    return srv


def bench_tftp(tmp: Path) -> list[Row]:
    """Each figure is ROUNDS rounds, provision and tftpd-hpa taking turns (so a slow spell of the
    machine falls on both); the ratio is of the summed times, and the rounds' own ratios are shown
    beside it."""
    boot = tmp / "boot"
    boot.mkdir(exist_ok=True)
    files = {"loader.efi": os.urandom(SIZE_MB << 20), "small.efi": os.urandom(2 << 20), "probe.bin": b"probe\n"}
    digests = {}
    for name, data in files.items():
        (boot / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    rows = []
    for clients, name in ((16, "loader.efi"), (64, "loader.efi"), (200, "small.efi")):
        size = len(files[name]) / 1e6
        times: dict[str, list[float]] = {"provision": [], "tftpd-hpa": []}
        failures = {"provision": 0, "tftpd-hpa": 0}
        for _ in range(ROUNDS if clients < 200 else 1):
            for label in ("provision", "tftpd-hpa"):
                port = free_port(2)
                srv = _start_tftp(label, tmp, boot, port)
                out = tmp / f"out-{label}"
                out.mkdir()
                t, failed = fetch_all(port, name, out, clients)
                failures[label] += failed + _check(out, digests[name])
                srv.terminate()
                srv.wait(30)
                times[label].append(t)
        ours_t, peer_t = sum(times["provision"]), sum(times["tftpd-hpa"])
        ours_f, peer_f = failures["provision"], failures["tftpd-hpa"]
        rounds = len(times["provision"])
        total = clients * size * rounds
        if clients < 200:
            each = ", ".join(f"{p / o:.2f}" for o, p in zip(times["provision"], times["tftpd-hpa"], strict=True))
            rows.append(Row(f"TFTP {clients} x {size:.0f} MB concurrent (curl, blksize 1468): aggregate, "
                            f"{rounds} rounds (each: {each})",
                            f"{total / ours_t:.0f} MB/s ({ours_f} failed)", f"tftpd-hpa {total / peer_t:.0f} MB/s",
                            ratio=peer_t / ours_t, target=">= 1.0x tftpd-hpa (the C loop)",
                            ok=peer_t / ours_t >= 1.0 and not ours_f))
        else:
            rows.append(Row(f"TFTP {clients} x {size:.0f} MB concurrent: failures", f"{ours_f} failed ({ours_t:.1f} s)",
                            f"tftpd-hpa {peer_f} failed ({peer_t:.1f} s)", ratio=peer_t / ours_t,
                            target="0 failures", ok=ours_f == 0))
    return rows


def main() -> None:
    print(f"# {os.cpu_count()} cores shared by servers and clients (curl, wrk, Python clients); "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "r").mkdir()
        (tmp / "t").mkdir()
        (tmp / "m").mkdir()
        rows += bench_render(tmp / "r")
        from .fleet import run as bench_fleet

        rows += bench_fleet()
        rows += bench_tftp(tmp / "t")
        from .media import run as bench_media

        rows += bench_media(tmp / "m")
    from .hostile import run as bench_hostile
    from .rebuild import run as bench_rebuild

    rows += bench_hostile()
    rows += bench_rebuild()
    print(render(rows))


if __name__ == "__main__":
    main()
