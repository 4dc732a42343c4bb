"""End to end over real sockets: `provision serve` and `provision rebuild` as processes, one
ipmi_sim BMC per node, HTTPS fakes of the engine, IPA and Satellite and a DNS responder reached
by the real clients, and a test thread playing each
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
from urllib.parse import urlsplit

import pytest
import requests

from provision import config as config_mod
from provision import services
from provision.workflow import states as S

from .conftest import free_port, ui_login, use_db, write_config
from .fakes.dnsserver import FakeDns
from .fakes.foreman import FakeForeman
from .fakes.ipa import FakeIpa
from .fakes.ovirt import FakeOvirt
from .fakes.ovirt_json import engine_json
from .fakes.tls import make_tls
from .ipmisim import start_bmc
from .workflow_helpers import NAMES, import_nodes, loopback_inventory, mgmt_ip, stub_media

HE_HOSTS = {"rhvnode4", "rhvnode8", "rhvnode9"}
RENAMED = {"eno2": "enp2s0f0", "eno3": "enp2s0f1", "ens1f0": "ens1f0np0", "ens1f1": "ens1f1np1"}


class Lab:
    """The outside world as HTTPS fakes (engine, IPA, Satellite), a DNS responder and ipmi_sim
    BMCs, all in the test process; provision's processes reach them with the real clients."""

    def __init__(self, tmp: Path, db_url: str | None = None, front: bool = False,
                 installed: Path | None = None, auth: str = "") -> None:
        """`front`: nodes and operators reach serve through a real nginx configured as
        docs/nginx/provision.conf ships it (public_url is nginx's; serve trusts it as a proxy).
        `installed`: the Python of a venv provision was installed into from its wheel: serve and
        the CLI run from it, in `tmp`, isolated from the checkout (-I), with the templates it ships."""
        self.tmp = tmp
        self.provision = [str(installed), "-I", "-m", "provision"] if installed else [sys.executable, "-m", "provision"]
        self.cwd = tmp if installed else None
        self.bmcs = {n: start_bmc(tmp, n) for n in NAMES}
        for b in self.bmcs.values():
            b.set_power(True)
        tls = make_tls(tmp / "tls")
        self.ovirt, self.ipa, self.sat, self.dns = FakeOvirt(tls), FakeIpa(tls), FakeForeman(tls), FakeDns()
        # rhvnode4 is a hosted-engine host running the engine VM; rhvnode8 and rhvnode9 (not rebuilt) are
        # hosted-engine hosts too, so two stay Up while rhvnode4 is rebuilt
        self.old_ids = {n: self.ovirt.add_existing(n, "ocpcluster", hosted_engine=n in HE_HOSTS)
                        for n in NAMES + ["rhvnode8", "rhvnode9"]}
        self.ovirt.engine_vm_on = "rhvnode4"
        for i, n in enumerate(NAMES):
            fqdn = f"{n}.lab.example.com"
            for kind, cn in (("netgroup", "ng-hv"), ("hbacrule", "allow-ops"), ("sudorule", "ops-root")):
                self.ipa.members[kind].setdefault(cn, set())
            self.ipa.add_host(fqdn, ["hypervisors", f"rack-{i}"], netgroup=["ng-hv"], hbacrule=["allow-ops"],
                              sudorule=["ops-root"], managedby=["mgmt1.lab.example.com"])
            self.sat.add_host(fqdn, hostgroup_id=7, hostgroup_title="hypervisors/rhvh", lifecycle_environment_id=3,
                              lifecycle_environment_name="Production", content_view_id=11, content_view_name="RHVH-4.4")
            self.dns.add(fqdn, "A", mgmt_ip(i))
            self.dns.add(f"{11 + i}.10.0.127.in-addr.arpa", "PTR", fqdn + ".")
        for name, value in (("engine", "engine-secret"), ("ipa", "ipa-secret"), ("sat", "sat-secret"), ("bmc", "password")):
            (tmp / f"{name}.pw").write_text(value + "\n")
        stub_media(tmp)  # what media import and the loaders leave: the gate before retire fetches them
        self.http_port, self.tftp_port = free_port(), free_port(socket.SOCK_DGRAM)
        self.front = None
        server_extra = "run_lease = 3"  # a serve killed while it holds a submitted run loses it after 3 s
        if front:
            from .nginxfront import start_nginx

            self.front = start_nginx(tmp / "nginx", f"127.0.0.1:{self.http_port}", tmp / "media", tls.cert, tls.key,
                                     boot_export=tmp / "boot-export")
            server_extra += '\ntrusted_proxies = ["127.0.0.1/32"]'
        paths_extra = f'boot_export = "{tmp}/boot-export"\n' if front else ""
        self.cfg = write_config(tmp, self.http_port, self.tftp_port, server_extra=server_extra, templates=not installed,
                                extra=paths_extra + f"""
[engine]
url = "{self.ovirt.url}/ovirt-engine"
password_file = "{tmp}/engine.pw"
ca_file = "{tls.ca}"
poll_interval = 0.05

[ipa]
server = "{self.ipa.url.removeprefix('https://')}"
password_file = "{tmp}/ipa.pw"
ca_file = "{tls.ca}"
domain = "lab.example.com"
realm = "LAB.EXAMPLE.COM"

[satellite]
url = "{self.sat.url}"
password_file = "{tmp}/sat.pw"
ca_file = "{tls.ca}"
organization = "Lab"
location = "Default Location"
activation_keys = ["rhvh-4.4"]

[dns]
nameservers = ["127.0.0.1"]
port = {self.dns.port}

[defaults]
poll_interval = 0.05
ipmi_timeout = 20
step_timeouts = {{drain = 60, installing = 120, enroll = 60, register = 60}}
{auth}
""")
        if db_url:
            use_db(self.cfg, db_url)
        if self.front is not None:  # what nodes are told: nginx's address
            self.cfg.write_text(self.cfg.read_text().replace(f'public_url = "http://127.0.0.1:{self.http_port}"',
                                                             f'public_url = "{self.front.http}"'))
        self.svc = services.build(config_mod.load(self.cfg))
        import_nodes(self.svc.store, loopback_inventory({n: b.port for n, b in self.bmcs.items()}, str(tmp / "bmc.pw")))
        for n in NAMES:  # the engine's view of each host's NICs matches its snapshot: no drift
            facts = self.svc.store.snapshot(n).facts
            self.ovirt.hosts[self.old_ids[n]]["_net"] = engine_json(facts)
            # after the reinstall the host reports its NICs again; rhvnode5's come back under EL9 names
            self.ovirt.reinstalled[n] = engine_json(facts.renamed(RENAMED if n == "rhvnode5" else {}))
        self.start_serve()
        self.stop = threading.Event()
        self.hold: set[str] = set()  # nodes whose installer waits (they stay in `installing`)
        # nodes whose first boot fails to enroll once: they report `failed`, then ask `installed` again
        # until the server has a fresh enrollment for them (the first-boot unit's retry)
        self.enroll_fail: set[str] = set()
        self.otp_history: dict[str, list[str]] = {}
        self.installer_log: list[str] = []
        self.installer_errors: dict[str, str] = {}  # a node's installer that stopped on an unexpected answer
        self.otps: dict[str, str] = {}
        self.threads = [threading.Thread(target=self.install, args=(i, n), daemon=True) for i, n in enumerate(NAMES)]
        for t in self.threads:
            t.start()

    @property
    def node_port(self) -> int:
        """Where nodes send their HTTP requests: nginx's port behind the front, else serve's."""
        return self.front.http_port if self.front is not None else self.http_port

    def start_serve(self) -> None:
        self.serve = subprocess.Popen([*self.provision, "--config", str(self.cfg), "serve"], cwd=self.cwd,
                                      stdout=open(self.tmp / "serve.log", "a"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.http_port}"
        deadline = time.monotonic() + 30
        while not self._up():
            assert self.serve.poll() is None and time.monotonic() < deadline, (self.tmp / "serve.log").read_text()
            time.sleep(0.1)

    def api(self, method: str, path: str, **kw) -> requests.Response:
        token = (self.tmp / "admin.token").read_text().strip()
        return requests.request(method, f"{self.url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"},
                                timeout=30, **kw)

    def _up(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).ok
        except requests.RequestException:  # refused, or slow to answer while it starts on a loaded machine
            return False

    def rebuild(self, *args: str) -> subprocess.Popen:
        # SIGINT as on a terminal: a suite started in the background (`make test &`, some CI runners)
        # ignores it, the CLI would inherit that, and a Ctrl-C test could not detach it
        return subprocess.Popen([*self.provision, "--config", str(self.cfg), "rebuild", *args], cwd=self.cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    # -- the node's side ---------------------------------------------------------------------
    def install(self, i: int, name: str) -> None:
        try:
            self._install(i, name)
        except BaseException as exc:
            self.installer_errors[name] = f"{type(exc).__name__}: {exc}"
            raise

    def _install(self, i: int, name: str) -> None:
        """Wait for the BMC power cycle and an install config over TFTP; fetch the kickstart;
        report installed and enrolled from the node's address."""
        ip = mgmt_ip(i)
        mac = f"0c-c4-7a-3b-{3 + i:02x}-01"
        bmc = self.bmcs[name]
        powered: dict[str, bool] = {}
        while not self.stop.is_set():
            time.sleep(0.1)
            if "set power 1" not in bmc.sets() or name in self.hold:
                continue
            if not powered.get(name):  # firmware and PXE take a while (minutes on a real host): a node is
                powered[name] = True   # seen in `installing` before it fetches its kickstart
                time.sleep(0.5)
            # --max-time: a request sent to a serve that is then killed gets no answer and no ICMP
            # error; without a limit curl waits for minutes (as firmware would retry, so do we)
            grub = subprocess.run(["curl", "-sS", "--max-time", "5", "--interface", ip,
                                   f"tftp://127.0.0.1:{self.tftp_port}/grub.cfg-01-{mac}"],
                                  capture_output=True, text=True).stdout
            m = re.search(r"inst\.ks=(\S+)", grub) if "set default=install" in grub else None
            if not m:
                continue
            path = urlsplit(m.group(1)).path  # whichever serve rendered it: the path is the same
            status, ks = self._call("GET", path, ip, {"X-RHN-Provisioning-MAC-0": f"eth0 {mac.replace('-', ':')}"})
            assert status == 200 and f"--device={mac.replace('-', ':')}" in ks
            cb = urlsplit(re.search(r'"(http://[^"]+/api/v1/callback/[^/"]+)/installed"', ks).group(1)).path
            status, body = self._call("POST", cb + "/installed", ip)
            assert status == 200, body
            reply = json.loads(body)
            self.otp_history.setdefault(name, []).append(reply["ipa_otp"])
            if name in self.enroll_fail:  # ipa-client-install failed: report it, then ask again until retried
                self.enroll_fail.discard(name)
                status, _ = self._call("POST", cb + "/failed", ip)
                assert status == 200
                while not self.stop.is_set():
                    time.sleep(0.2)
                    status, body = self._call("POST", cb + "/installed", ip)
                    if status == 200:
                        reply = json.loads(body)
                        self.otp_history[name].append(reply["ipa_otp"])
                        break
            self.otps[name] = reply["ipa_otp"]
            assert reply["satellite_command"].endswith("| bash") and "BEGIN CERTIFICATE" in reply["satellite_ca"]
            # the reboot into the installed system and the first boot's enrollment take a while (minutes on
            # a real host): a node is seen in `enroll` before it reports `enrolled`
            time.sleep(0.5)
            # what running the registration command does: the host is back, on the activation key's defaults
            self.sat.add_host(f"{name}.lab.example.com", lifecycle_environment_id=1, content_view_id=2)
            status, _ = self._call("POST", cb + "/enrolled", ip)
            assert status == 200
            self.installer_log.append(name)
            return

    def _call(self, method: str, path: str, ip: str, headers: dict | None = None) -> tuple[int, str]:
        for _ in range(600):  # a serve may be down for a restart
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.node_port, timeout=10, source_address=(ip, 0))
                conn.request(method, path, headers=headers or {})
                resp = conn.getresponse()
                return resp.status, resp.read().decode()
            except (ConnectionError, http.client.HTTPException):  # refused, or an answer cut short by the
                time.sleep(0.1)                                   # kill: the node asks again (its curl loop)
        raise AssertionError(f"{method} {path}: server unreachable")

    def close(self) -> None:
        self.stop.set()
        self.serve.terminate()
        self.serve.wait(10)
        for b in self.bmcs.values():
            b.stop()
        for fake in (self.ovirt, self.ipa, self.sat, self.dns):
            fake.close()
        if self.front is not None:
            self.front.stop()
        self.svc.close()


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.close()


def bmc_commands(bmc) -> list[str]:
    """The BMC's commands, a request pyghmi sent again (no answer in time, under load) counted once:
    ipmi_sim carries out a retransmitted request a second time, a real BMC's power on is a no-op when
    on, and neither is a second power cycle."""
    out: list[str] = []
    for c in bmc.sets():
        if not out or out[-1] != c:
            out.append(c)
    return out


def assert_all_done_one_cycle_each(lab: Lab) -> None:
    """Every node done, one power cycle per BMC, and the order and content of every call."""
    for n in NAMES:
        assert lab.svc.store.node_state(n).state == S.DONE, (n, lab.svc.store.node_state(n))
        assert bmc_commands(lab.bmcs[n]) == ["set boot pxe", "set power 0", "set power 1"], (n, lab.bmcs[n].sets())
    api = [(r.method, r.path.removeprefix("/ovirt-engine/api")) for r in lab.ovirt.requests
           if r.path.startswith("/ovirt-engine/api") and r.method != "GET"]
    for i, n in enumerate(NAMES):
        old = lab.old_ids[n]
        new = lab.ovirt.by_name(n)
        assert new["status"] == "up" and new["id"] != old
        deact = api.index(("POST", f"/hosts/{old}/deactivate"))
        assert deact < api.index(("DELETE", f"/hosts/{old}")), "deactivate before remove"
        old_calls = [(m, a, body) for m, a, body in lab.ovirt.retired_logs[old]]
        assert new["_he"] is (n in HE_HOSTS), "a hosted-engine host comes back as one (deploy_hosted_engine)"
        if n in HE_HOSTS:
            undeploy = [i for i, (m, a, b) in enumerate(old_calls) if a == "install" and b["undeploy_hosted_engine"]]
            assert undeploy and undeploy[0] < [i for i, (m, a, _) in enumerate(old_calls) if m == "DELETE"][0]
        assert all(not (b or {}).get("stop_gluster_service") for m, a, b in old_calls if a == "deactivate")
        calls = [a for m, a, _ in new["_log"] if a and m == "POST"]
        firsts = [calls.index(a) for a in ("fenceagents", "setupnetworks", "commitnetconfig", "activate")]
        assert firsts == sorted(firsts) and calls.count("fenceagents") == 1, calls
        assert (new["_fence"]["address"], new["_fence"]["port"]) == ("127.0.0.1", lab.bmcs[n].port)
        net = new["_networks"]
        bonds = {b["name"]: b["bonding"]["options"]["option"] for b in net["modified_bonds"]["host_nic"]}
        assert bonds["bond0"][:2] == [{"name": "mode", "value": "4"}, {"name": "lacp_rate", "value": "fast"}]
        r = RENAMED if n == "rhvnode5" else {}  # old NIC names mapped to the reinstalled host's by MAC
        assert {"name": "primary", "value": r.get("ens1f0", "ens1f0")} in bonds["bond1"]
        slaves = {b["name"]: [s["name"] for s in b["bonding"]["slaves"]["host_nic"]] for b in net["modified_bonds"]["host_nic"]}
        assert slaves["bond0"] == [r.get("eno2", "eno2"), r.get("eno3", "eno3")], slaves
        storage = next(a for a in net["modified_network_attachments"]["network_attachment"]
                       if a["network"]["name"] == "storage")
        assert storage["host_nic"] == {"name": "bond1"}
        assert storage["ip_address_assignments"]["ip_address_assignment"][0]["ip"]["address"] == f"198.51.100.{13 + i}"
        fqdn = f"{n}.lab.example.com"
        seq = [m for m, args, _ in lab.ipa.rpc if args and args[0] == fqdn and m.startswith("host_")]
        assert "host_del" in seq and seq.index("host_del") < seq.index("host_add"), seq
        assert lab.otps[n] == lab.ipa.hosts[fqdn]["_otp"], "the node got the OTP host_add returned"
        assert f"rack-{i}" in [g for g, members in lab.ipa.hostgroups.items() if fqdn in members]
        assert all(fqdn in lab.ipa.members[k][cn] for k, cn in (("netgroup", "ng-hv"), ("hbacrule", "allow-ops"),
                                                                ("sudorule", "ops-root")))
        assert lab.ipa.hosts[fqdn]["managedby_host"] == sorted([fqdn, "mgmt1.lab.example.com"])
        assert lab.ipa.schema_violations == [] and lab.ovirt.model_violations == []
        back = [h for h in lab.sat.hosts.values() if h["name"] == fqdn]
        assert len(back) == 1 and back[0]["_cves"] == [((11, "RHVH-4.4"), (3, "Production"))], \
            "back on its content view and lifecycle environment, as recorded from Katello 4.x's nested facet"
        reg = next(r for r in lab.sat.registrations if r.get("hostgroup_id") == 7)
        assert reg["lifecycle_environment_id"] == 3 and reg["insecure"] is False
    assert lab.ovirt.engine_vm_on in ("rhvnode8", "rhvnode9"), "the engine VM moved off the rebuilt host"


def rebuild_all_to_done(lab: Lab) -> None:
    """`provision rebuild` of every node, three at a time, to done with one power cycle each."""
    proc = lab.rebuild(*NAMES, "--max-parallel", "3", "--yes")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + (lab.tmp / "serve.log").read_text()[-3000:]
    assert_all_done_one_cycle_each(lab)


def test_three_nodes_rebuild_end_to_end_through_the_documented_nginx_front(tmp_path):
    """The production layout: nginx (docs/nginx/provision.conf) in front. Every kickstart, callback
    and media probe goes through it and is accepted by its source checks from the node's forwarded
    address (a forged X-Forwarded-For from anywhere else: tests/test_edge.py); the console is served
    over TLS, the nodes' side over plain HTTP."""
    lab = Lab(tmp_path, front=True)
    try:
        rebuild_all_to_done(lab)
        log = (tmp_path / "nginx" / "access.log").read_text()
        for i, _n in enumerate(NAMES):  # each node's own requests went through nginx, from its address
            assert re.search(rf"^{re.escape(mgmt_ip(i))} .*\"GET /ks/[^ ]+ HTTP/1.1\" 200", log, re.M), log[-2000:]
            assert re.search(rf"^{re.escape(mgmt_ip(i))} .*\"POST /api/v1/callback/[^ ]+/enrolled HTTP/1.1\" 200",
                             log, re.M)
        assert re.search(r'"(GET|HEAD) /media/[^ ]+ HTTP/1.1" 20[06]', log)  # the media probe, served by nginx
        for i, n in enumerate(NAMES):  # serve saw each node's own address (X-Forwarded-For from its trusted proxy)
            assert any(e.message == f"kickstart fetched by {mgmt_ip(i)}" for e in lab.svc.store.events(n))
        # the boot probe before each power cycle read the node's GRUB config through nginx, from the
        # exported files (nginx logs a file it sent itself with no upstream): the install config
        assert re.search(r'"GET /boot/grub/grub\.cfg-01-[0-9a-f-]+ HTTP/1.1" 200', log)
        exported = {p.name for p in (tmp_path / "boot-export" / "boot" / "grub").iterdir()}
        assert {f"grub.cfg-01-0c-c4-7a-3b-{3 + i:02x}-01" for i in range(len(NAMES))} <= exported
        assert requests.get(lab.front.http + "/", timeout=10, allow_redirects=False).status_code == 308
        console = requests.get(lab.front.https + "/healthz", timeout=10, verify=str(tmp_path / "tls" / "ca.pem"))
        assert console.status_code == 200 and console.json()["status"] == "ok"
        # the console over HTTPS: its session cookie is Secure (public_url is plain HTTP, for GRUB)
        token = (tmp_path / "admin.token").read_text().strip()
        with requests.Session() as s:
            r = ui_login(s, lab.front.https, token, allow_redirects=False, verify=str(tmp_path / "tls" / "ca.pem"))
            assert r.status_code == 302 and "; Secure" in r.headers["Set-Cookie"], r.headers
            assert "Strict" in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]
        with requests.Session() as s:  # the same server over plain HTTP: no Secure (the browser would drop it)
            r = ui_login(s, lab.url, token, allow_redirects=False)
            assert r.status_code == 302 and "Secure" not in r.headers["Set-Cookie"]
    finally:
        lab.close()


def test_three_nodes_rebuild_end_to_end(lab):
    """`provision rebuild` submits the batch to the service and follows it to the end."""
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
    proc = lab.rebuild(*NAMES, "--max-parallel", "3", "--yes", "--json", "--local")  # the batch in that process
    deadline = time.monotonic() + 120
    while not any(lab.svc.store.node_state(n).state == boundary for n in NAMES):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, f"never saw {boundary}"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    snapshots_before = {n: {x.id for x in lab.svc.store.snapshots(n)} for n in NAMES}
    resumed = lab.rebuild("--resume", "--yes", "--json")
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out
    assert_all_done_one_cycle_each(lab)
    for n in NAMES:  # nothing stored is lost (the capture step may add an engine snapshot)
        assert snapshots_before[n] <= {x.id for x in lab.svc.store.snapshots(n)}


@pytest.fixture
def lab_pg(tmp_path, pg):
    lab = Lab(tmp_path, db_url=pg.new_database())
    yield lab
    lab.close()


def test_on_postgresql_two_servers_and_two_runners_act_once_per_node(lab_pg):
    """The store on a real PostgreSQL: a second `serve` on the same database, and two rebuild
    runners started at once for the same nodes; every node is rebuilt exactly once."""
    lab = lab_pg
    assert lab.svc.store.engine.dialect.name == "postgresql"
    cfg2 = lab.tmp / "second.toml"
    text = lab.cfg.read_text()
    cfg2.write_text(text.replace(f"127.0.0.1:{lab.http_port}", f"127.0.0.1:{free_port()}")
                    .replace(f"127.0.0.1:{lab.tftp_port}", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"))
    second = subprocess.Popen([sys.executable, "-m", "provision", "--config", str(cfg2), "serve"],
                              stdout=open(lab.tmp / "serve2.log", "w"), stderr=subprocess.STDOUT)
    try:
        runners = [lab.rebuild(*NAMES, "--max-parallel", "3", "--canary", "0", "--yes", "--json", "--local")
                   for _ in range(2)]
        outs = [r.communicate(timeout=300)[0] for r in runners]
        codes = sorted(r.returncode for r in runners)
        reasons = {n: lab.svc.store.node_state(n).fail_reason for n in NAMES}
        assert codes in ([0, 0], [0, 2]), (codes, reasons)  # both share the nodes, or the later one is refused
        done = [n for out, r in zip(outs, runners, strict=True) if r.returncode == 0
                for n in json.loads(out.strip().splitlines()[-1])["summary"]["done"]]
        assert sorted(done) == NAMES, outs  # each node done by exactly one runner
        assert_all_done_one_cycle_each(lab)
        assert second.poll() is None, (lab.tmp / "serve2.log").read_text()
    finally:
        second.terminate()
        second.wait(10)


def _submit(lab) -> int:
    r = lab.api("POST", "/rebuilds", json={"nodes": NAMES, "max_parallel": 3, "canary": 0})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _wait_run(lab, run_id: int, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not (run := lab.svc.store.rebuild(run_id)).finished:
        assert time.monotonic() < deadline, (run, {n: lab.svc.store.node_state(n) for n in NAMES})
        time.sleep(0.2)
    return run


def test_ctrl_c_detaches_the_cli_and_watch_reattaches_without_changing_the_outcome(lab):
    held = NAMES[-1]  # its installer waits until released: the run cannot end before the Ctrl-C
    lab.hold.add(held)
    proc = lab.rebuild(*NAMES, "--max-parallel", "2", "--canary", "1", "--yes")
    deadline = time.monotonic() + 120
    while lab.svc.store.node_state(held).state != S.INSTALLING:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # a node is installing: the run is not over, and goes on without the CLI
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    lab.hold.discard(held)
    (run,) = lab.svc.store.rebuilds()
    assert f"detached from rebuild {run.id}; it goes on in the service. Re-attach: provision watch {run.id}" in out
    watch = subprocess.run([sys.executable, "-m", "provision", "--config", str(lab.cfg), "watch", "--json"],
                           capture_output=True, text=True, timeout=300)
    assert watch.returncode == 0, watch.stdout + watch.stderr
    final = json.loads(watch.stdout.strip().splitlines()[-1])
    assert final["status"] == "done" and sorted(final["summary"]["done"]) == NAMES
    lines = [json.loads(x) for x in watch.stdout.strip().splitlines()[:-1]]
    assert {(x["node"], x["state"]) for x in lines} >= {(n, "done") for n in NAMES}
    assert_all_done_one_cycle_each(lab)
    listed = subprocess.run([sys.executable, "-m", "provision", "--config", str(lab.cfg), "runs", "--json"],
                            capture_output=True, text=True, timeout=60)
    row = json.loads(listed.stdout)[0]
    assert (row["id"], row["status"], row["runner"], row["done"], row["failed"]) == (run.id, "done", "service", 3, 0)


@pytest.fixture
def busy_cores():
    """Both cores kept busy by two other processes, as on a loaded CI machine."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for h in hogs:
        h.kill()
        h.wait()


@pytest.mark.parametrize("boundary", list(S.STEPS))
def test_serve_killed_mid_batch_resumes_the_submitted_run_when_it_starts_again(lab, busy_cores, boundary):
    """A rebuild submitted to the API runs in `serve`. SIGKILL it once a node reaches each step, with
    both cores busy; a new `serve` takes the run over when the lease expires and every node ends done
    exactly once, with one power cycle each, and the run's summary and counts name every node."""
    run_id = _submit(lab)
    deadline = time.monotonic() + 180
    while not any(lab.svc.store.node_state(n).state == boundary for n in NAMES):
        assert lab.serve.poll() is None and time.monotonic() < deadline, (lab.tmp / "serve.log").read_text()
        time.sleep(0.005)
    killed_owner = lab.svc.store.rebuild(run_id).owner
    assert killed_owner.split(":")[1] == str(lab.serve.pid)
    os.kill(lab.serve.pid, signal.SIGKILL)
    lab.serve.wait()
    lab.start_serve()
    run = _wait_run(lab, run_id)
    assert run.status == "done" and sorted(run.summary["done"]) == NAMES, run
    assert run.summary["failed"] == [] and run.summary["pending"] == [], run.summary  # every node accounted for
    assert lab.api("GET", f"/rebuilds/{run_id}").json()["counts"] == {"done": 3, "failed": 0, "in_flight": 0,
                                                                       "not_started": 0}
    assert_all_done_one_cycle_each(lab)
    log = (lab.tmp / "serve.log").read_text()
    assert f"rebuild {run_id}: resuming" in log, log[-3000:]  # the new serve, from the nodes' states


def test_on_postgresql_the_other_serve_takes_over_when_the_lease_holder_is_killed(lab_pg):
    """Two `serve` processes on one PostgreSQL database: the run is held by one; SIGKILL it and
    the other takes the run over when its lease expires; every node done, one power cycle each."""
    lab = lab_pg
    cfg2 = lab.tmp / "second.toml"
    port2, tftp2 = free_port(), free_port(socket.SOCK_DGRAM)
    cfg2.write_text(lab.cfg.read_text().replace(f"127.0.0.1:{lab.http_port}", f"127.0.0.1:{port2}")
                    .replace(f"127.0.0.1:{lab.tftp_port}", f"127.0.0.1:{tftp2}"))
    second = subprocess.Popen([sys.executable, "-m", "provision", "--config", str(cfg2), "serve"],
                              stdout=open(lab.tmp / "serve2.log", "w"), stderr=subprocess.STDOUT)
    try:
        run_id = _submit(lab)
        deadline = time.monotonic() + 120
        while not (any(lab.svc.store.node_state(n).state == S.INSTALLING for n in NAMES)
                   and lab.svc.store.rebuild(run_id).owner):
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.005)
        holder = int(lab.svc.store.rebuild(run_id).owner.split(":")[1])
        survivor = second if holder == lab.serve.pid else lab.serve
        assert holder in (lab.serve.pid, second.pid) and survivor.pid != holder
        os.kill(holder, signal.SIGKILL)
        if holder == lab.serve.pid:  # the nodes (installer threads) now reach the survivor
            lab.serve.wait()
            lab.http_port, lab.tftp_port = port2, tftp2
        run = _wait_run(lab, run_id)
        why = {n: (st.state, st.failed_step, st.fail_reason) for n in NAMES if (st := lab.svc.store.node_state(n))}
        assert run.status == "done" and sorted(run.summary["done"]) == NAMES, (why, lab.installer_errors, run.summary)
        assert_all_done_one_cycle_each(lab)
        assert survivor.poll() is None
    finally:
        second.terminate()
        second.wait(10)


# -- safe failure: nothing irreversible until everything checkable is checked, and a way back ----
def _run_one(lab, name: str, **extra) -> int:
    r = lab.api("POST", "/rebuilds", json={"nodes": [name], "canary": 0, **extra})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _until_state(lab, name: str, state: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while (st := lab.svc.store.node_state(name)).state != state:
        assert time.monotonic() < deadline, (name, st.state, st.fail_reason)
        time.sleep(0.05)
    return st


def test_media_not_served_stops_the_node_before_anything_is_deleted(lab):
    """The trial: no loaders in the TFTP root and no stage 2: `check` said ok, and the rebuild retired
    the host and power-cycled it into a boot that could only fail. Now preflight stops it."""
    for f in ("shimx64.efi", "grubx64.efi"):
        (lab.tmp / "bootfiles" / f).unlink()
    (lab.tmp / "media" / "rhvh" / "images" / "install.img").unlink()
    run = _wait_run(lab, _run_one(lab, "rhvnode3"))
    st = lab.svc.store.node_state("rhvnode3")
    assert run.status == "failed" and (st.state, st.failed_step) == (S.FAILED, S.PREFLIGHT), st
    assert "not retired, nothing was changed: media" in st.fail_reason and "shimx64.efi" in st.fail_reason
    assert "images/install.img: HTTP 404" in st.fail_reason
    assert lab.ovirt.hosts.get(lab.old_ids["rhvnode3"]) is not None  # still in the engine, IPA, Satellite
    assert "rhvnode3.lab.example.com" in lab.ipa.hosts
    assert any(h["name"] == "rhvnode3.lab.example.com" for h in lab.sat.hosts.values())
    assert lab.bmcs["rhvnode3"].sets() == []  # the BMC was never told anything


def test_a_failure_after_retire_is_retried_from_the_failed_step_to_done_with_one_power_cycle(lab):
    """The engine fails while the reinstalled host is added back: the node is parked in
    failed(register), a host that exists nowhere. A new run without retry is refused naming it; one
    with retry resumes at register with what retire recorded, and the node is not reinstalled."""
    lab.hold.add("rhvnode3")  # its installer waits: the node stays installing, already retired
    run_id = _run_one(lab, "rhvnode3")
    _until_state(lab, "rhvnode3", S.INSTALLING)
    lab.ovirt.inject("503", "/ovirt-engine/api/hosts", times=1000)  # from now on the engine fails
    lab.hold.discard("rhvnode3")
    st = _until_state(lab, "rhvnode3", S.FAILED)
    assert st.failed_step == S.REGISTER and "HTTP 503" in st.fail_reason, st
    assert _wait_run(lab, run_id).status == "failed"
    lab.ovirt.faults.clear()
    refused = lab.api("POST", "/rebuilds", json={"nodes": ["rhvnode3"]})
    assert refused.status_code == 400 and "failed in register" in refused.text and "retry" in refused.text
    again = _wait_run(lab, _run_one(lab, "rhvnode3", retry=True))
    assert again.status == "done", (again, lab.svc.store.node_state("rhvnode3"))
    assert bmc_commands(lab.bmcs["rhvnode3"]) == ["set boot pxe", "set power 0", "set power 1"]  # installed once
    new = next(h for h in lab.ovirt.hosts.values() if h["name"] == "rhvnode3")
    assert new["status"] == "up" and new["_networks"]
    ipa_adds = [m for m, args, _ in lab.ipa.rpc if m == "host_add" and args == ["rhvnode3.lab.example.com"]]
    assert len(ipa_adds) == 1  # enrolled once, before the power cycle


def test_an_enrollment_that_failed_on_the_node_is_retried_without_a_reinstall(lab):
    """ipa-client-install fails at first boot: the node reports `failed` (failed(enroll)) and its
    first-boot unit asks `installed` again. A retry issues a fresh one-time password, the node gets
    it, enrolls, and the rebuild completes: one power cycle, two IPA host_adds."""
    lab.enroll_fail.add("rhvnode3")
    run_id = _run_one(lab, "rhvnode3")
    st = _until_state(lab, "rhvnode3", S.FAILED)
    assert st.failed_step == S.ENROLL and "reported a failure during enroll" in st.fail_reason, st
    assert _wait_run(lab, run_id).status == "failed"
    again = _wait_run(lab, _run_one(lab, "rhvnode3", retry=True))
    assert again.status == "done", (again, lab.svc.store.node_state("rhvnode3"))
    first, fresh = lab.otp_history["rhvnode3"]
    assert first and fresh and first != fresh and lab.ipa.hosts["rhvnode3.lab.example.com"]["_otp"] == fresh
    assert bmc_commands(lab.bmcs["rhvnode3"]) == ["set boot pxe", "set power 0", "set power 1"]


def test_abort_leaves_a_node_a_retry_takes_over_and_every_view_counts_the_same(lab):
    """Abort while a node installs: the run ends, the node stays installing (its install goes on) and
    a later run refused it. `runs`, `watch` and the API count the same; a retry takes the node over
    where it is, without a second power cycle."""
    lab.hold.add("rhvnode3")
    run_id = _run_one(lab, "rhvnode3")
    _until_state(lab, "rhvnode3", S.INSTALLING)
    assert lab.api("POST", f"/rebuilds/{run_id}/abort").status_code == 202
    run = _wait_run(lab, run_id)
    assert run.status == "aborted" and lab.svc.store.node_state("rhvnode3").state == S.INSTALLING
    counts = lab.api("GET", f"/rebuilds/{run_id}").json()["counts"]
    assert counts == {"done": 0, "failed": 0, "in_flight": 1, "not_started": 0}
    runs = json.loads(subprocess.run([sys.executable, "-m", "provision", "--config", str(lab.cfg), "runs", "--json"],
                                     capture_output=True, text=True, timeout=60).stdout)
    row = next(r for r in runs if r["id"] == run_id)
    assert (row["done"], row["failed"], row["status"]) == (0, 0, "aborted")
    watched = subprocess.run([sys.executable, "-m", "provision", "--config", str(lab.cfg), "watch", str(run_id),
                              "--wait"], capture_output=True, text=True, timeout=60)
    assert "done: 0, failed: 0, not finished: 1" in watched.stdout, watched.stdout
    assert "rhvnode3: left installing: `provision rebuild rhvnode3 --retry` takes it over" in watched.stderr
    refused = lab.api("POST", "/rebuilds", json={"nodes": ["rhvnode3"]})
    assert refused.status_code == 400 and "--retry takes it over" in refused.text
    taken = _run_one(lab, "rhvnode3", retry=True)
    lab.hold.discard("rhvnode3")
    assert _wait_run(lab, taken).status == "done"
    assert bmc_commands(lab.bmcs["rhvnode3"]) == ["set boot pxe", "set power 0", "set power 1"]
    assert any(f"taken over from rebuild {run_id}" in e.message or "adopt" in e.message
               for e in lab.svc.store.events("rhvnode3"))


def test_behind_the_front_a_forged_x_forwarded_for_from_a_non_proxy_is_refused(tmp_path):
    """serve trusts X-Forwarded-For from nginx's address only: a host that reaches serve directly
    and claims a node's address in the header is taken for what it is, and refused the node's
    kickstart; the node itself, through nginx, gets it."""
    lab = Lab(tmp_path, front=True)
    try:
        lab.hold.add("rhvnode3")
        run_id = _run_one(lab, "rhvnode3")
        _until_state(lab, "rhvnode3", S.INSTALLING)
        grub = subprocess.run(["curl", "-sS", "--max-time", "5", "--interface", mgmt_ip(0),
                               f"tftp://127.0.0.1:{lab.tftp_port}/grub.cfg-01-0c-c4-7a-3b-03-01"],
                              capture_output=True, text=True, timeout=30).stdout
        path = urlsplit(re.search(r"inst\.ks=(\S+)", grub).group(1)).path
        forged = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.9",
                                 "-H", f"X-Forwarded-For: {mgmt_ip(0)}", f"{lab.url}{path}"],
                                capture_output=True, text=True, timeout=30)
        assert forged.stdout == "403", forged
        assert any("127.0.0.9" in e.message and "refused" in e.message for e in lab.svc.store.events("rhvnode3"))
        lab.hold.discard("rhvnode3")
        assert _wait_run(lab, run_id).status == "done"
        assert any(e.message == f"kickstart fetched by {mgmt_ip(0)}" for e in lab.svc.store.events("rhvnode3"))
    finally:
        lab.close()
