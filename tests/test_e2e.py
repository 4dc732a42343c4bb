"""End to end over real sockets: `provision serve` and `provision rebuild` as processes, one
ipmi_sim BMC per node, file-backed fake engine/IPA/Satellite, and a test thread playing each
node's installer (TFTP config -> inst.ks= -> kickstart -> installed -> enrolled) from the node's
own loopback address. Then kill -9 at every step boundary and resume."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from provision import config as config_mod
from provision import services
from provision.integrations.fakestate import FakeState
from provision.workflow import states as S

from .conftest import free_port, write_config
from .ipmisim import start_bmc
from .workflow_helpers import NAMES, import_nodes, loopback_inventory, mgmt_ip, seed_fakes


class Lab:
    def __init__(self, tmp: Path, latency: float) -> None:
        self.tmp = tmp
        self.bmcs = {n: start_bmc(tmp, n) for n in NAMES}
        for b in self.bmcs.values():
            b.set_power(True)
        self.http_port, self.tftp_port = free_port(), free_port(socket.SOCK_DGRAM)
        self.cfg = write_config(tmp, self.http_port, self.tftp_port, extra=f"""
[defaults]
poll_interval = 0.05
ipmi_timeout = 20
step_timeouts = {{drain = 60, installing = 120, enroll = 60, register = 60}}

[integrations]
fake_dir = "{tmp}/fakes"
fake_latency = {latency}
""")
        self.svc = services.build(config_mod.load(self.cfg))
        (tmp / "bmc.pw").write_text("password\n")
        import_nodes(self.svc.store, loopback_inventory({n: b.port for n, b in self.bmcs.items()}, str(tmp / "bmc.pw")))
        fakes = tmp / "fakes"
        self.engine, self.ipa = FakeState(fakes / "engine.json"), FakeState(fakes / "ipa.json")
        seed_fakes(self.engine, self.ipa, FakeState(fakes / "satellite.json"))
        self.serve = subprocess.Popen([sys.executable, "-m", "provision", "--config", str(self.cfg), "serve"],
                                      stdout=open(tmp / "serve.log", "w"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.http_port}"
        deadline = time.monotonic() + 30
        while not self._up():
            assert self.serve.poll() is None and time.monotonic() < deadline, (tmp / "serve.log").read_text()
            time.sleep(0.1)
        self.stop = threading.Event()
        self.installer_log: list[str] = []
        self.otps: dict[str, str] = {}
        self.threads = [threading.Thread(target=self.install, args=(i, n), daemon=True) for i, n in enumerate(NAMES)]
        for t in self.threads:
            t.start()

    def _up(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).ok
        except requests.ConnectionError:
            return False

    def rebuild(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "provision", "--config", str(self.cfg), "rebuild", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)

    # -- the node's side ---------------------------------------------------------------------
    def install(self, i: int, name: str) -> None:
        """Wait for the BMC power cycle and an install config over TFTP; fetch the kickstart;
        report installed and enrolled from the node's address."""
        ip = mgmt_ip(i)
        mac = f"0c-c4-7a-3b-{3 + i:02x}-01"
        bmc = self.bmcs[name]
        while not self.stop.is_set():
            time.sleep(0.1)
            if "set power 1" not in bmc.sets():
                continue
            grub = subprocess.run(["curl", "-sS", "--interface", ip, f"tftp://127.0.0.1:{self.tftp_port}/grub.cfg-01-{mac}"],
                                  capture_output=True, text=True).stdout
            m = re.search(r"inst\.ks=(\S+)", grub) if "set default=install" in grub else None
            if not m:
                continue
            path = m.group(1).split(str(self.http_port), 1)[1]
            status, ks = self._call("GET", path, ip, {"X-RHN-Provisioning-MAC-0": f"eth0 {mac.replace('-', ':')}"})
            assert status == 200 and f"--device={mac.replace('-', ':')}" in ks
            cb = re.search(r'"(http://[^"]+/api/v1/callback/[^/"]+)/installed"', ks).group(1).split(str(self.http_port), 1)[1]
            status, body = self._call("POST", cb + "/installed", ip)
            assert status == 200, body
            self.otps[name] = json.loads(body)["ipa_otp"]
            status, _ = self._call("POST", cb + "/enrolled", ip)
            assert status == 200
            self.installer_log.append(name)
            return

    def _call(self, method: str, path: str, ip: str, headers: dict | None = None) -> tuple[int, str]:
        for _ in range(50):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10, source_address=(ip, 0))
                conn.request(method, path, headers=headers or {})
                resp = conn.getresponse()
                return resp.status, resp.read().decode()
            except ConnectionError:
                time.sleep(0.1)
        raise AssertionError(f"{method} {path}: server unreachable")

    def close(self) -> None:
        self.stop.set()
        self.serve.terminate()
        self.serve.wait(10)
        for b in self.bmcs.values():
            b.stop()
        self.svc.close()


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path, latency=0.1)
    yield lab
    lab.close()


def assert_all_done_one_cycle_each(lab: Lab) -> None:
    for n in NAMES:
        assert lab.svc.store.node_state(n).state == S.DONE, (n, lab.svc.store.node_state(n))
        assert lab.bmcs[n].sets() == ["set boot pxe", "set power 0", "set power 1"], (n, lab.bmcs[n].sets())
    hosts = {h["name"]: h for h in lab.engine.read()["hosts"].values()}
    assert all(hosts[n]["status"] == "up" for n in NAMES)
    add_otps = {c["fqdn"]: c["otp"] for c in lab.ipa.read()["calls"] if c["verb"] == "host_add"}
    assert {f"{n}.lab.example.com": lab.otps[n] for n in NAMES} == add_otps


def test_three_nodes_rebuild_end_to_end(lab):
    proc = lab.rebuild(*NAMES, "--max-parallel", "2", "--yes", "--json")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    assert sorted(summary["done"]) == NAMES and summary["peak_in_flight"] == 2
    assert_all_done_one_cycle_each(lab)
    # never more than two between start and done, from the event log
    spans = []
    for n in NAMES:
        ev = [e for e in lab.svc.store.events(n) if e.kind == "transition"]
        spans.append((ev[0].ts, ev[-1].ts))
    assert max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans) <= 2
    assert "ks-fetched" in {e.kind for e in lab.svc.store.events("rhvnode4")}


@pytest.mark.parametrize("boundary", list(S.STEPS))
def test_kill_minus_9_at_each_step_then_resume(lab, boundary):
    proc = lab.rebuild(*NAMES, "--max-parallel", "3", "--yes", "--json")
    deadline = time.monotonic() + 120
    while not any(lab.svc.store.node_state(n).state == boundary for n in NAMES):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, f"never saw {boundary}"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    snapshots_before = {n: len(lab.svc.store.snapshots(n)) for n in NAMES}
    resumed = lab.rebuild("--resume", "--yes", "--json")
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out
    assert_all_done_one_cycle_each(lab)
    assert {n: len(lab.svc.store.snapshots(n)) for n in NAMES} == snapshots_before
