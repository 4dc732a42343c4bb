"""Rebuild orchestration at scale: N simulated nodes (fake BMCs, fake engine/IPA/Satellite with
per-call latency, a timed installer of 20-30 s) with --max-parallel P. Reports the makespan against
its floor (every node's own work spread evenly over the slots: no schedule does better), the
orchestration CPU per node (this process's CPU time over the batch, fakes included, / N), and peak
memory. It rebuilds the nodes twice: the first time nothing is recorded of them and they start as
listed; the second starts the nodes whose first rebuild took longest first (the target)."""

from __future__ import annotations

import heapq
import math
import os
import random
import resource
import tempfile
import threading
import time
from pathlib import Path

from provision import config as config_mod
from provision import services, tokens
from provision.domain import parse_nodes
from provision.integrations.dns import FakeDns
from provision.integrations.engine import FakeEngine
from provision.integrations.fakestate import FakeState
from provision.integrations.ipa import FakeIpa
from provision.integrations.satellite import FakeSatellite
from provision.power.fake import FakePowerFactory
from provision.workflow import callbacks
from provision.workflow.batch import Batch

from .__main__ import REPO
from .gen import nodes as gen_nodes
from .table import Row

N = int(os.environ.get("BENCH_REBUILD_NODES", "200"))
PARALLEL = int(os.environ.get("BENCH_REBUILD_PARALLEL", "50"))
CALL = 0.005      # each engine / IPA / Satellite call
BMC = 0.05        # each BMC operation
INSTALL = (20.0, 30.0)  # simulated install time, uniform
ENROLL = 0.2      # first boot to `enrolled`


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as d:
        return _run(Path(d))


def _run(tmp: Path) -> list[Row]:
    cfg_file = tmp / "provision.toml"
    cfg_file.write_text(f"""[server]
db_url = "sqlite:///{tmp}/bench.db"
admin_token_file = "{tmp}/admin.token"
secret_key_file = "{tmp}/secret.key"
[paths]
state_dir = "{tmp}/var"
templates = "{REPO}"
[defaults]
poll_interval = 2.0
""")
    data = gen_nodes(N)
    pw = tmp / "bmc.pw"
    pw.write_text("x\n")
    for n in data["nodes"]:
        n["bmc"]["password_file"] = str(pw)
    states = {k: FakeState(latency=CALL) for k in ("engine", "ipa", "sat")}
    with states["engine"].edit() as e:
        e["hosts"] = {n["name"]: {"id": n["name"], "name": n["name"], "status": "up", "cluster": n["cluster"]}
                      for n in data["nodes"]}
    with states["ipa"].edit() as i:
        i["hosts"] = {n["fqdn"]: {"hostgroups": ["hv"]} for n in data["nodes"]}
    rng = random.Random(7)
    install_time = {n["name"]: rng.uniform(*INSTALL) for n in data["nodes"]}
    ips = {n["name"]: n["facts"]["networks"][0]["address"].split("/")[0] for n in data["nodes"]}
    holder: dict = {}

    def installer(name: str) -> None:
        def finish():
            ctx = holder["ctx"]
            token = tokens.derive(ctx.key, ctx.store.active_build(name).nonce)
            callbacks.handle(ctx, token, "installed", ips[name], b"")
            time.sleep(ENROLL)
            callbacks.handle(ctx, token, "enrolled", ips[name], b"")
        threading.Timer(install_time[name], finish).start()

    power = FakePowerFactory(latency=BMC, on_netboot=installer)
    svc = services.build(config_mod.load(cfg_file), power=power, bootcheck=False,  # no server: simulated nodes
                         engine=FakeEngine(states["engine"], poll=0.02),
                         ipa=FakeIpa(states["ipa"]), satellite=FakeSatellite(states["sat"]), dns=FakeDns())
    holder["ctx"] = svc
    svc.store.import_nodes(parse_nodes(data))
    names = [n["name"] for n in data["nodes"]]
    owner = {n["name"]: n["name"] for n in data["nodes"]} | {n["fqdn"]: n["name"] for n in data["nodes"]}

    def batch() -> dict:
        """One rebuild of every node: its makespan, CPU, and each node's own work and duration."""
        seen = {k: len(s.read().get("calls", [])) for k, s in states.items()}
        bmc_seen = {n: len(power.bmcs[n].calls) for n in names if n in power.bmcs}
        run = svc.store.create_rebuild(names, {"max_parallel": PARALLEL})
        t0, cpu0, since = time.perf_counter(), time.process_time(), time.time()
        result = Batch(svc, names, rebuild_id=run.id, max_parallel=PARALLEL).run()
        makespan, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert result.ok and len(result.done) == N, result
        # each node's own work: its simulated install + enroll, and every fake call it made in this
        # batch (each fake call is one simulated round trip of CALL seconds, recorded by the fake; a
        # call names its node, its node's FQDN, or its engine host's id, old or new)
        finals = {k: s.read() for k, s in states.items()}
        owner.update({h["id"]: h["name"] for h in finals["engine"]["hosts"].values()})
        per_node_calls = dict.fromkeys(names, 0)
        for c in (c for k, f in finals.items() for c in f["calls"][seen[k]:]):
            node = next((owner[k] for k in (c.get("name"), c.get("host_id"), c.get("fqdn")) if k in owner), None)
            if node is not None:
                per_node_calls[node] += 1
        work = {n: install_time[n] + ENROLL + per_node_calls[n] * CALL
                + (len(power.bmcs[n].calls) - bmc_seen.get(n, 0)) * BMC for n in names}
        durations, started = {}, {}
        for n in names:
            ev = [e.ts for e in svc.store.events(n) if e.kind == "transition" and e.ts.timestamp() >= since - 1]
            durations[n], started[n] = (ev[-1] - ev[0]).total_seconds(), ev[0]
        return {"makespan": makespan, "cpu": cpu, "work": work, "durations": durations,
                "order": sorted(names, key=started.__getitem__), "peak": result.peak_in_flight}

    # the first rebuild of these nodes: nothing recorded of them yet, so they start as listed; the
    # second starts the nodes whose first took longest first (as an upgrade after an earlier one)
    first = batch()
    second = batch()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    svc.close()
    rows = []
    for label, b in (("second rebuild (longest last rebuild first)", second),
                     ("first rebuild (nothing recorded: as listed)", first)):
        rows += _rows(label, b, names, primary=b is second)
    return rows + [Row("  peak in flight; peak RSS of the bench process",
                       f"{second['peak']}; {peak_mb:.0f} MiB")]


def _rows(label: str, b: dict, names: list[str], primary: bool) -> list[Row]:
    makespan, cpu, work, durations = b["makespan"], b["cpu"], b["work"], b["durations"]
    waves = math.ceil(N / PARALLEL)
    bound = waves * max(work.values())
    # no schedule beats this one: every node's own work spread evenly over the slots
    floor = max(max(work.values()), sum(work.values()) / PARALLEL)
    overhead = sum(durations[n] - work[n] for n in names) / N
    cpu_ms = cpu / N * 1000
    # the same nodes' own work, in the order this batch started them, scheduled with no overhead at
    # all (the next node into the first slot that frees): what the order alone costs
    slots = [0.0] * PARALLEL
    heapq.heapify(slots)
    for n in b["order"]:
        heapq.heappush(slots, heapq.heappop(slots) + work[n])
    online = max(slots)
    target = "<= 1.05x" if primary else ""
    return [
        Row(f"rebuild {N} simulated nodes, --max-parallel {PARALLEL}, installs {INSTALL[0]:.0f}-{INSTALL[1]:.0f} s, "
            f"{label}: makespan / floor", f"{makespan / floor:.3f}x ({makespan:.1f} s vs {floor:.1f} s)",
            target=target, ok=makespan / floor <= 1.05 if primary else None),
        Row("  floor: all nodes' own work spread evenly over the slots", f"{floor:.1f} s"),
        Row("  the same order with no overhead (next node into the first free slot) / floor",
            f"{online / floor:.3f}x ({online:.1f} s)"),
        Row(f"  waves x slowest node's own work ({waves} x {max(work.values()):.2f} s)", f"{bound:.1f} s"),
        Row("  orchestration CPU per node (this process over the batch, fakes included)", f"{cpu_ms:.0f} ms",
            target="< 100 ms" if primary else "", ok=cpu_ms < 100 if primary else None),
        Row("  orchestration overhead per node (its duration - its own work)", f"{overhead:.2f} s"),
    ]
