"""The rebuild workflow in process, with fakes: state table, batches, callbacks, failures."""

from __future__ import annotations

import dataclasses
import time

import pytest

from provision import config as config_mod
from provision import services, tokens
from provision.integrations.dns import FakeDns
from provision.integrations.engine import FakeEngine
from provision.integrations.fakestate import FakeState
from provision.integrations.ipa import FakeIpa
from provision.integrations.satellite import FakeSatellite
from provision.power.fake import FakeBmc, FakePowerFactory
from provision.workflow import callbacks
from provision.workflow import states as S
from provision.workflow.batch import Batch
from provision.workflow.machine import advance

from .conftest import write_config
from .workflow_helpers import (
    NAMES,
    FakeInstaller,
    build_wf,
    cycled,
    import_nodes,
    loopback_inventory,
    mgmt_ip,
    seed_fakes,
    with_fakes,
)


@pytest.fixture
def wf(tmp_path):
    svc = build_wf(tmp_path)
    yield svc
    svc.close()


def test_a_redfish_node_gets_a_redfish_fence_agent(tmp_path):
    """A host with no fence agent recorded gets the one its BMC implies: `redfish` (oVirt 4.4+) for a
    Redfish BMC, with the URL's host and port, and ssl_insecure only where the inventory says
    verify = false; never an ipmilan agent pointing at a Redfish URL."""
    cfg = write_config(tmp_path, extra="\n[defaults]\npoll_interval = 0.02\n")
    states = {k: FakeState() for k in ("engine", "ipa", "sat")}
    seed_fakes(states["engine"], states["ipa"], states["sat"])
    power = FakePowerFactory()
    svc = services.build(config_mod.load(cfg), power=power, bootcheck=False, engine=FakeEngine(states["engine"], poll=0.01),
                         ipa=FakeIpa(states["ipa"]), satellite=FakeSatellite(states["sat"]), dns=FakeDns())
    try:
        (tmp_path / "bmc.pw").write_text("password\n")
        data = loopback_inventory(pw_file=str(tmp_path / "bmc.pw"))
        data["nodes"][0]["bmc"] = {"driver": "redfish", "address": "https://bmc-rhvnode3.lab.example.com:8443",
                                   "username": "admin", "password_file": str(tmp_path / "bmc.pw"), "verify": False,
                                   "system": "System.Embedded.1"}
        import_nodes(svc.store, data)
        svc = with_fakes(svc, states)
        result, _ = run_batch(svc, names=["rhvnode3"])
        assert result.ok, result
        host = next(h for h in states["engine"].read()["hosts"].values() if h["name"] == "rhvnode3")
        assert host["fence_agents"] == [{
            "type": "redfish", "address": "bmc-rhvnode3.lab.example.com", "port": 8443, "username": "admin",
            "order": 1, "encrypt_options": False,
            "options": {"ssl": "1", "ssl_insecure": "1", "systems_uri": "/redfish/v1/Systems/System.Embedded.1"}}]
        assert any(e.message.startswith("fence agents: redfish bmc-rhvnode3.lab.example.com:8443 order 1")
                   for e in svc.store.events("rhvnode3"))
    finally:
        svc.close()


def test_a_vmedia_node_boots_its_iso_and_ejects_it_when_installed(wf, tmp_path):
    """bmc.boot = "vmedia": the build's ISO URL goes into the virtual CD, a one-time CD boot and a
    power action follow, and `installed` ejects it; no network boot is set."""
    data = loopback_inventory(pw_file=str(tmp_path / "bmc.pw"))
    node = next(n for n in data["nodes"] if n["name"] == "rhvnode3")
    node["bmc"] = {"driver": "redfish", "address": "https://bmc-rhvnode3.lab.example.com", "username": "admin",
                   "password_file": str(tmp_path / "bmc.pw"), "boot": "vmedia"}
    import_nodes(wf.store, {"nodes": [node]})
    result, _ = run_batch(wf, names=["rhvnode3"])
    assert result.ok, result
    deadline = time.monotonic() + 60  # the eject runs after `installed` is answered, off the node's request
    while "virtual media ejected" not in [e.message for e in wf.store.events("rhvnode3")]:
        assert time.monotonic() < deadline, "never ejected"
        time.sleep(0.02)
    calls = [c for _, c in wf.power.bmcs["rhvnode3"].calls]
    assert calls[calls.index("insert-media"):] == ["insert-media", "boot-cd", "cycle", "eject-media"], calls
    assert "boot-network" not in calls and wf.power.bmcs["rhvnode3"].media is None
    events = [e.message for e in wf.store.events("rhvnode3")]
    assert any(m.startswith("virtual media Cd: http://127.0.0.1:8080/vmedia/********/boot.iso inserted") for m in events)
    assert "virtual media ejected" in events


def run_batch(wf, names=NAMES, fail=None, **kw):
    installer = FakeInstaller(wf, cycled(wf), callbacks.handle, fail=fail)
    installer.start()
    run = wf.store.create_rebuild(names, kw)
    result = Batch(wf, names, rebuild_id=run.id, **kw).run()
    installer.stop.set()
    return result, installer


def overlap(store, names) -> int:
    """Most nodes at once between leaving `ready` and reaching `done`, from the event log."""
    points = []
    for n in names:
        ev = [e for e in store.events(n) if e.kind == "transition"]
        start = next(e.ts for e in ev if "(start)" in e.message)
        end = next(e.ts for e in ev if "-> done" in e.message)
        points += [(start, 1), (end, -1)]
    live = peak = 0
    for _, d in sorted(points, key=lambda p: (p[0], p[1])):
        live += d
        peak = max(peak, live)
    return peak


def test_transition_table():
    assert S.next_state(S.READY, "start") == S.PREFLIGHT
    assert S.next_state(S.NETBOOT, "installed") == S.ENROLL
    assert S.next_state(S.FAILED, "resume", failed_step=S.RETIRE) == S.RETIRE
    for bad in ((S.READY, "ok"), (S.DONE, "installed"), (S.INSTALLING, "enrolled")):
        with pytest.raises(S.InvalidTransition):
            S.next_state(*bad)
    assert all(S.next_state(s, "fail") == S.FAILED for s in S.STEPS)


def test_advance_is_compare_and_set(wf):
    assert advance(wf.store, "rhvnode3", "start") == S.PREFLIGHT
    assert advance(wf.store, "rhvnode3", "ok", expect=S.DRAIN) is None  # someone else's view: nothing written
    assert wf.store.node_state("rhvnode3").state == S.PREFLIGHT


def test_three_nodes_two_in_flight_all_done(wf):
    result, installer = run_batch(wf, max_parallel=2)
    assert set(result.done) == set(NAMES) and result.ok
    assert result.peak_in_flight == 2 and overlap(wf.store, NAMES) <= 2
    for n in NAMES:
        calls = [c for _, c in wf.power.bmcs[n].calls]
        assert calls.count("cycle") == 1 and calls.index("boot-network") < calls.index("cycle")
        assert wf.power.bmcs[n].uefi is True
    engine = wf.fakes["engine"].read()
    verbs = [(c["verb"], c.get("host_id") or c.get("name")) for c in engine["calls"]]
    for n in NAMES:
        assert verbs.index(("deactivate", f"id-{n}")) < verbs.index(("remove", f"id-{n}")) < verbs.index(("add_host", n))
    new = {h["name"]: h for h in engine["hosts"].values()}
    assert all(new[n]["status"] == "up" for n in NAMES)
    assert new["rhvnode3"]["fence_agents"] == [{"type": "ipmilan", "address": "127.0.0.1", "port": 16623,
                                                "username": "admin", "order": 1, "encrypt_options": False,
                                                "options": {"lanplus": "1"}}]  # none recorded: the BMC's own
    assert new["rhvnode3"]["networks"]["storage"] == {"interface": "bond1.20", "address": "198.51.100.13/24"}
    ipa = wf.fakes["ipa"].read()
    for n in NAMES:
        fqdn = f"{n}.lab.example.com"
        seq = [c["verb"] for c in ipa["calls"] if c.get("fqdn") == fqdn]
        assert seq.index("host_del") < seq.index("host_add")
        otp = next(c["otp"] for c in ipa["calls"] if c["verb"] == "host_add" and c["fqdn"] == fqdn)
        assert installer.replies[n]["ipa_otp"] == otp
        assert ipa["hosts"][fqdn]["hostgroups"] == sorted(["hypervisors", f"rack-{NAMES.index(n)}"])
    for n in NAMES:
        assert wf.store.active_build(n) is None  # token dead after done
        assert "set default=local" in wf.renderer.render(n, "grub").text
        assert "enroll_reply" not in wf.store.node_state(n).data  # the OTP is not kept


def test_failure_stops_new_nodes_and_resume_retries(wf):
    wf.power.bmcs["rhvnode3"] = FakeBmc(fail="auth")
    result, _ = run_batch(wf, max_parallel=1)
    assert result.failed == ["rhvnode3"] and set(result.pending) == {"rhvnode4", "rhvnode5"}
    st = wf.store.node_state("rhvnode3")
    assert (st.state, st.failed_step) == (S.FAILED, S.PREFLIGHT)
    assert "Incorrect password" in st.fail_reason and "password\n" not in st.fail_reason
    assert wf.store.node_state("rhvnode4").state == S.READY  # never started
    wf.power.bmcs["rhvnode3"].fail = None
    installer = FakeInstaller(wf, cycled(wf), callbacks.handle)
    installer.start()
    result = Batch(wf, NAMES, rebuild_id=1, max_parallel=2, retry={"rhvnode3"}).run()
    installer.stop.set()
    assert set(result.done) == set(NAMES)


def test_installer_failure_parks_node_with_log_and_reason(wf):
    result, _ = run_batch(wf, names=["rhvnode4"], fail={"rhvnode4"})
    st = wf.store.node_state("rhvnode4")
    assert result.failed == ["rhvnode4"] and st.failed_step in (S.NETBOOT, S.INSTALLING)
    assert "reported a failure" in st.fail_reason
    assert wf.store.logs("rhvnode4")[0][2] == "anaconda: no disk found\n"


def test_installing_times_out(wf):
    wf.cfg.defaults.step_timeouts["installing"] = 0.3
    run = wf.store.create_rebuild(["rhvnode5"], {})
    result = Batch(wf, ["rhvnode5"], rebuild_id=run.id).run()
    st = wf.store.node_state("rhvnode5")
    assert result.failed == ["rhvnode5"] and st.failed_step == S.INSTALLING
    assert "no installed callback within" in st.fail_reason


def hosts_down_at_once(engine_state) -> int:
    """Most hosts down at once per the engine: from deactivate to the new host's activate."""
    d = engine_state.read()
    names = {h["id"]: h["name"] for h in d["hosts"].values()} | {f"id-{n}": n for n in NAMES}
    points = [(c["ts"], 1 if c["verb"] == "deactivate" else -1) for c in d["calls"]
              if c["verb"] in ("deactivate", "activate") and c["host_id"] in names]
    live = peak = 0
    for _, delta in sorted(points, key=lambda p: (p[0], p[1])):
        live += delta
        peak = max(peak, live)
    return peak


def test_min_up_keeps_hosts_up(wf):
    # 4 hosts Up in the cluster (3 nodes + rhvnode9); min-up 3 allows one host down at a time
    result, _ = run_batch(wf, max_parallel=3, min_up=3)
    assert set(result.done) == set(NAMES)
    assert hosts_down_at_once(wf.fakes["engine"]) == 1


def test_min_up_impossible_stops_with_reason(wf):
    result, _ = run_batch(wf, max_parallel=3, min_up=4)
    assert result.done == [] and "fewer than --min-up 4" in result.error


def test_canary_runs_alone_first(wf):
    result, _ = run_batch(wf, max_parallel=2, canary=1)
    assert result.ok
    ev = {n: [e.ts for e in wf.store.events(n) if e.kind == "transition"] for n in NAMES}
    canary_done = ev["rhvnode3"][-1]
    assert all(ev[n][0] > canary_done for n in ("rhvnode4", "rhvnode5"))


def test_callbacks_bound_to_token_address_and_idempotent(wf):
    store, ctx = wf.store, wf
    advance(store, "rhvnode3", "start")
    for _ in range(5):
        advance(store, "rhvnode3", "ok")
    build, token = store.arm("rhvnode3", ctx.key, 3600)
    assert store.node_state("rhvnode3").state == S.NETBOOT
    assert callbacks.handle(ctx, "A" * 32, "installed", mgmt_ip(0), b"").status == 403
    assert callbacks.handle(ctx, token, "installed", "127.0.10.99", b"").status == 403
    assert callbacks.handle(ctx, token, "installed", mgmt_ip(1), b"").status == 403  # another node's address
    assert store.node_state("rhvnode3").state == S.NETBOOT and store.active_build("rhvnode3").boots_install
    first = callbacks.handle(ctx, token, "installed", mgmt_ip(0), b"")
    assert first.status == 200 and first.body["ipa_otp"]
    assert not store.active_build("rhvnode3").boots_install
    again = callbacks.handle(ctx, token, "installed", mgmt_ip(0), b"")
    assert again.body == first.body  # the same answer (a curl retry, a lost answer): no second enrollment
    host_adds = [c for c in wf.fakes["ipa"].read()["calls"] if c["verb"] == "host_add"]
    assert len(host_adds) == 1
    assert callbacks.handle(ctx, token, "enrolled", mgmt_ip(0), b"").status == 200
    assert callbacks.handle(ctx, token, "enrolled", mgmt_ip(0), b"").status == 200
    assert store.node_state("rhvnode3").state == S.REGISTER
    assert callbacks.handle(ctx, token, "bogus", mgmt_ip(0), b"").status == 404
    store.end_build("rhvnode3", "done")
    assert callbacks.handle(ctx, token, "enrolled", mgmt_ip(0), b"").status == 403
    assert tokens.digest(token) not in str(first.body)


def test_failed_callback_log_is_size_capped(wf):
    advance(wf.store, "rhvnode4", "start")
    _, token = wf.store.arm("rhvnode4", wf.key, 3600)
    wf.cfg.defaults.installer_log_max = 1024
    body = b"x" * 5000 + b"END"
    assert callbacks.handle(wf, token, "failed", mgmt_ip(1), body).status == 200
    kept = wf.store.logs("rhvnode4")[0][2]
    marker, _, log = kept.partition("\n")
    assert marker == "[provision: log truncated, last 1024 of 5003 bytes kept]"
    assert len(log) == 1024 and log.endswith("END")
    assert "truncated" in wf.store.node_state("rhvnode4").fail_reason
    assert callbacks.handle(wf, token, "failed", mgmt_ip(1), body).status == 200
    assert len(wf.store.logs("rhvnode4")) == 1


def test_nic_names_map_by_mac_after_a_reinstall_and_missing_macs_are_listed():
    import yaml

    from provision.domain import parse_nodes
    from provision.errors import ProvisionError
    from provision.workflow.nicmap import map_by_mac

    from .conftest import EXAMPLE

    facts = parse_nodes(yaml.safe_load(EXAMPLE.read_text()))[0].facts  # EL7-era names: eno1.., ens1f0/1
    reported = [("eno1", "0c:c4:7a:3b:03:01"), ("enp2s0f0", "0c:c4:7a:3b:03:02"), ("enp2s0f1", "0c:c4:7a:3b:03:03"),
                ("ens1f0np0", "3c:fd:fe:a1:03:10"), ("ens1f1np1", "3c:fd:fe:a1:03:11")]
    names = map_by_mac(facts, reported)
    new = facts.renamed(names)
    assert new.bond("bond0").slaves == ["enp2s0f0", "enp2s0f1"]
    assert new.bond("bond1").options["primary"] == "ens1f0np0"
    assert new.vlan("bond1.20").parent == "bond1" and new.management.interface == "eno1"
    assert sorted(n.mac for n in new.nics) == sorted(n.mac for n in facts.nics)
    plain = facts.model_dump(mode="json")  # a VLAN and a network directly on a renamed NIC follow it
    plain["vlans"].append({"id": 30, "parent": "eno4"})
    plain["networks"].append({"network": "backup", "interface": "eno4.30"})
    moved = type(facts).model_validate(plain).renamed({"eno4": "eno4np0"})
    assert moved.vlan("eno4np0.30") and any(a.interface == "eno4np0.30" for a in moved.networks)
    with pytest.raises(ProvisionError, match=r"no NIC with the MAC of ens1f1 \(3c:fd:fe:a1:03:11\)"):
        map_by_mac(facts, reported[:-1])


# -- hosted-engine and gluster hosts ------------------------------------------------------------
def _engine_hosts(wf, **flags):
    with wf.fakes["engine"].edit() as d:
        for name, f in flags.items():
            d["hosts"][f"id-{name}"].update(f)


def test_the_hosts_fence_agents_are_recorded_before_removal_and_restored_in_order(wf):
    """The host had its BMC's agent with its own options (order 2) behind a PDU (order 1): the BMC's
    comes back as it was, with the BMC password; the PDU's cannot (the engine never shows its
    password) and the node's events name it."""
    bmc_agent = {"type": "ipmilan", "address": "127.0.0.1", "port": 16623, "username": "admin", "order": 2,
                 "encrypt_options": False, "options": {"lanplus": "1", "power_wait": "6", "cipher": "17"}}
    pdu = {"type": "apc_snmp", "address": "pdu-7.lab.example.com", "port": 161, "username": "apc", "order": 1,
           "encrypt_options": False, "options": {"port": "12"}}
    _engine_hosts(wf, rhvnode3={"fence_agents": [pdu, bmc_agent]})
    result, _ = run_batch(wf, names=["rhvnode3"])
    assert result.done == ["rhvnode3"], wf.store.node_state("rhvnode3").fail_reason
    new = next(h for h in wf.fakes["engine"].read()["hosts"].values() if h["name"] == "rhvnode3")
    assert new["fence_agents"] == [bmc_agent]
    assert wf.store.node_state("rhvnode3").data["fence_agents"] == [pdu, bmc_agent]
    assert any("fence agent apc_snmp pdu-7.lab.example.com (order 1) not restored" in e.message
               for e in wf.store.events("rhvnode3"))
    calls = [c["verb"] for c in wf.fakes["engine"].read()["calls"]]
    assert calls.index("fence_agents") < calls.index("remove")


def test_hosted_engine_host_is_undeployed_before_removal_and_readded_with_deploy(wf):
    _engine_hosts(wf, rhvnode3={"hosted_engine": True}, rhvnode9={"hosted_engine": True})
    with wf.fakes["engine"].edit() as d:  # two more hosted-engine hosts stay Up: rhvnode9 and rhvnode8
        d["hosts"]["id-rhvnode8"] = {"id": "id-rhvnode8", "name": "rhvnode8", "status": "up", "cluster": "ocpcluster",
                                     "hosted_engine": True}
    result, _ = run_batch(wf, names=["rhvnode3"])
    assert result.done == ["rhvnode3"], wf.store.node_state("rhvnode3").fail_reason
    calls = [c["verb"] for c in wf.fakes["engine"].read()["calls"]]
    assert calls.index("undeploy_hosted_engine") < calls.index("remove")
    add = next(c for c in wf.fakes["engine"].read()["calls"] if c["verb"] == "add_host")
    assert add["hosted_engine"] is True


def test_a_host_still_running_the_engine_vm_is_never_retired(wf):
    _engine_hosts(wf, rhvnode3={"hosted_engine": True}, rhvnode9={"hosted_engine": True})
    with wf.fakes["engine"].edit() as d:
        d["hosts"]["id-rhvnode8"] = {"id": "id-rhvnode8", "name": "rhvnode8", "status": "up", "cluster": "ocpcluster",
                                     "hosted_engine": True}
    real = wf.engine.deactivate
    wf.engine.deactivate = lambda host_id, stop_gluster=False: (real(host_id, stop_gluster), _pin_engine_vm(wf))
    result, _ = run_batch(wf, names=["rhvnode3"])
    st = wf.store.node_state("rhvnode3")
    assert result.failed == ["rhvnode3"] and st.failed_step == S.RETIRE
    assert "still runs the engine VM (HostedEngine)" in st.fail_reason
    assert "remove" not in [c["verb"] for c in wf.fakes["engine"].read()["calls"]]


def _pin_engine_vm(wf):  # the engine VM did not migrate away
    with wf.fakes["engine"].edit() as d:
        d.setdefault("vms", {})["rhvnode3"] = ["HostedEngine"]


def test_hosted_engine_hosts_go_one_at_a_time_and_keep_enough_up(wf):
    _engine_hosts(wf, rhvnode3={"hosted_engine": True}, rhvnode4={"hosted_engine": True},
                  rhvnode9={"hosted_engine": True})
    with wf.fakes["engine"].edit() as d:
        d["hosts"]["id-rhvnode8"] = {"id": "id-rhvnode8", "name": "rhvnode8", "status": "up", "cluster": "ocpcluster",
                                     "hosted_engine": True}
    result, _ = run_batch(wf, names=["rhvnode3", "rhvnode4", "rhvnode5"], max_parallel=3)
    assert sorted(result.done) == ["rhvnode3", "rhvnode4", "rhvnode5"], result
    spans = {}
    for n in ("rhvnode3", "rhvnode4"):
        ev = [e for e in wf.store.events(n) if e.kind == "transition"]
        spans[n] = (ev[0].ts, ev[-1].ts)
    (a0, a1), (b0, b1) = spans["rhvnode3"], spans["rhvnode4"]
    assert a1 <= b0 or b1 <= a0, "two hosted-engine hosts were down at once"


def test_a_hosted_engine_host_is_not_started_when_too_few_would_stay_up(wf):
    _engine_hosts(wf, rhvnode3={"hosted_engine": True}, rhvnode9={"hosted_engine": True})  # 2 Up, the node included
    result, _ = run_batch(wf, names=["rhvnode3"])
    assert result.done == [] and result.pending == ["rhvnode3"]
    assert "would leave 1 hosted-engine host(s) Up in ocpcluster (hosted_engine_min_up 2" in result.error
    assert wf.store.node_state("rhvnode3").state == S.READY
    assert "deactivate" not in [c["verb"] for c in wf.fakes["engine"].read().get("calls", [])]


def test_gluster_hosts_are_refused_unless_allowed_and_stop_gluster_on_deactivate(wf):
    _engine_hosts(wf, rhvnode3={"gluster": True})
    result, _ = run_batch(wf, names=["rhvnode3"])
    st = wf.store.node_state("rhvnode3")
    assert result.failed == ["rhvnode3"] and st.failed_step == S.PREFLIGHT
    assert "bricks on it are not recovered" in st.fail_reason and "--allow-gluster" in st.fail_reason
    assert "deactivate" not in [c["verb"] for c in wf.fakes["engine"].read()["calls"]]
    installer = FakeInstaller(wf, cycled(wf), callbacks.handle)
    installer.start()
    result = Batch(wf, ["rhvnode3"], rebuild_id=1, retry={"rhvnode3"}, allow_gluster=True).run()
    installer.stop.set()
    assert result.done == ["rhvnode3"], wf.store.node_state("rhvnode3").fail_reason
    deact = next(c for c in wf.fakes["engine"].read()["calls"] if c["verb"] == "deactivate")
    assert deact["stop_gluster"] is True


def _installing(wf, name: str) -> str:
    """Move `name` through the steps to `installing` with an armed build; its build token."""
    advance(wf.store, name, "start", expect=S.READY, rebuild_id=1)
    for step in S.STEPS[: S.STEPS.index(S.INSTALLING)]:
        advance(wf.store, name, "ok", expect=step)
    build, _ = wf.store.arm(name, wf.key, 3600)
    return tokens.derive(wf.key, build.nonce)


def test_installed_answers_the_same_until_enrolled_and_concurrent_retries_enroll_once(wf):
    """curl gives up after 60 s and asks again while the first request may still be working: every
    `installed` of the node gets the same answer (its one enrollment), one at a time; once the node
    reports `enrolled` no secret goes out any more."""
    import threading

    name = "rhvnode3"
    token = _installing(wf, name)
    replies, go = [], threading.Barrier(6)

    def ask():
        go.wait()
        replies.append(callbacks.handle(wf, token, "installed", mgmt_ip(0), b""))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status for r in replies] == [200] * 6 and all(r.body == replies[0].body for r in replies)
    assert replies[0].body["ipa_otp"] and replies[0].body["satellite_command"]
    assert [c["verb"] for c in wf.fakes["ipa"].read()["calls"]].count("host_add") == 1
    assert callbacks.handle(wf, token, "enrolled", mgmt_ip(0), b"").status == 200
    late = callbacks.handle(wf, token, "installed", mgmt_ip(0), b"")
    assert late.status == 200 and late.body["ipa_otp"] == "" and late.body["satellite_command"] == ""
    assert "enroll_reply" not in wf.store.node_state(name).data  # the sealed secrets are gone with `enrolled`


def test_installed_again_after_a_server_died_mid_enrollment_gets_its_enrollment(wf):
    """The serve that took `installed` was killed after the node moved to `enroll` and before its
    reply was sealed (its IPA host half made); the node, whose request failed, asks again: it gets
    a one-time password that IPA holds, not "already enrolled" with nothing to enroll with."""
    name = "rhvnode3"
    token = _installing(wf, name)
    sat = wf.satellite
    real_command = sat.registration_command

    def killed(*_a, **_k):
        raise SystemExit("serve killed")  # after host_add, before the reply is sealed

    sat.registration_command = killed
    with pytest.raises(SystemExit):
        callbacks.handle(wf, token, "installed", mgmt_ip(0), b"")
    sat.registration_command = real_command
    assert wf.store.node_state(name).state == S.ENROLL and "enroll_reply" not in wf.store.node_state(name).data
    again = callbacks.handle(wf, token, "installed", mgmt_ip(0), b"")
    assert again.status == 200 and again.body["ipa_otp"], again.body
    fqdn = f"{name}.lab.example.com"
    assert wf.fakes["ipa"].read()["hosts"][fqdn]["otp"] == again.body["ipa_otp"]
    verbs = [c["verb"] for c in wf.fakes["ipa"].read()["calls"] if c.get("fqdn") == fqdn]
    assert verbs.count("host_add") == 2 and "host_del" in verbs[verbs.index("host_add"):]  # the half-made host went
    assert callbacks.handle(wf, token, "enrolled", mgmt_ip(0), b"").status == 200


def test_arm_replaces_an_engine_key_file_left_empty_by_a_killed_run(wf):
    """kill -9 while the engine key was being written left an empty engine.pub; the resumed arm
    step trusted it and every render of the node failed (HTTP 400). Now it is fetched again."""
    from provision.workflow import steps

    key_file = wf.cfg.paths.state_dir / "engine.pub"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text("")
    steps.arm(wf, wf.store.node_state("rhvnode3"))
    assert key_file.read_text().startswith("ssh-")
    assert [p.name for p in key_file.parent.iterdir() if p.name.startswith(".engine.pub")] == []
    rendered = wf.renderer.render("rhvnode3", "kickstart", show_secrets=True)
    assert key_file.read_text().strip() in rendered.text


def _retry(wf, name: str):
    """What `provision rebuild NAME --retry` runs: a new run that may resume or take over `name`."""
    installer = FakeInstaller(wf, cycled(wf), callbacks.handle)
    installer.start()
    try:
        run = wf.store.create_rebuild([name], {"retry": True})
        return Batch(wf, [name], rebuild_id=run.id, retry={name}).run()
    finally:
        installer.stop.set()


class _Once:
    """Make `obj.verb` raise `exc` on its first call, then behave."""

    def __init__(self, obj, verb: str, exc: Exception) -> None:
        self.real, self.exc, self.calls = getattr(obj, verb), exc, 0
        setattr(obj, verb, self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise self.exc
        return self.real(*args, **kwargs)


@pytest.mark.parametrize("system,verb,step", [
    ("ipa", "host_add", S.ARM),               # enrollment prepared at arm: before the power cycle
    ("satellite", "registration_command", S.ARM),
    ("power", "netboot", S.NETBOOT),          # the BMC refused: nothing was power-cycled
    ("satellite", "restore_content", S.REGISTER),
    ("engine", "add_host", S.REGISTER),
    ("engine", "setup_networks", S.REGISTER),
])
def test_a_failure_after_retire_in_each_system_is_retried_to_done_with_one_power_cycle(wf, system, verb, step):
    """The host exists nowhere after retire: whichever system fails after it, the node is parked in
    failed(step) and a retry resumes there with what was recorded, and the node is reinstalled once."""
    from provision.errors import ProvisionError
    from provision.integrations.engine import EngineError
    from provision.integrations.ipa import IpaError
    from provision.integrations.satellite import SatelliteError
    from provision.power.base import PowerRejected

    errors = {"ipa": IpaError("host_add: Internal error (903)"), "satellite": SatelliteError("HTTP 500"),
              "engine": EngineError("POST /hosts: HTTP 503"), "power": PowerRejected("rhvnode3", "bmc", "busy")}
    if system == "power":  # the factory makes a driver per call: its first netboot for the node fails
        real, failed = wf.power, []

        def power(node, _real=real):
            driver = _real(node)
            inner = getattr(driver, verb)

            def once(*args, **kwargs):
                if node.name == "rhvnode3" and not failed:
                    failed.append(True)
                    raise errors[system]
                return inner(*args, **kwargs)
            setattr(driver, verb, once)
            return driver
        power.bmcs = real.bmcs  # the installer stand-in watches the same simulated BMCs
        wf = dataclasses.replace(wf, power=power)
    else:
        _Once(getattr(wf, system), verb, errors[system])
    result, _ = run_batch(wf, names=["rhvnode3"])
    st = wf.store.node_state("rhvnode3")
    assert result.failed == ["rhvnode3"] and (st.state, st.failed_step) == (S.FAILED, step), (st.state, st.fail_reason)
    assert isinstance(errors[system], ProvisionError) and str(errors[system]) in st.fail_reason
    recorded = dict(st.data)
    result = _retry(wf, "rhvnode3")
    assert result.done == ["rhvnode3"], wf.store.node_state("rhvnode3").fail_reason
    assert wf.power.bmcs["rhvnode3"].cycles() == 1
    data = wf.store.node_state("rhvnode3").data
    assert data["ipa_membership"] == recorded["ipa_membership"] and data["retired_at"] == recorded["retired_at"]
    engine_calls = [c["verb"] for c in wf.fakes["engine"].read()["calls"]]
    assert engine_calls.count("remove") == 1 and engine_calls.count("deactivate") == 1  # nothing before it again


def test_an_abort_after_arm_disarms_the_node_and_a_retry_arms_it_again(wf):
    """Aborted between arm and the power cycle, a node would stay armed: its boot configs say
    install, and anyone's reboot would reinstall it with nobody watching. The abort disarms it; a
    retry arms it again and it is reinstalled once."""
    from provision.workflow.batch import disarm_after_abort

    run = wf.store.create_rebuild(["rhvnode3"], {})
    batch = None

    def stop_at_netboot(name, state, _detail):
        if state == S.NETBOOT:
            batch.stop.set()  # the operator's abort, as the conductor or --local process applies it

    batch = Batch(wf, ["rhvnode3"], rebuild_id=run.id, on_change=stop_at_netboot)
    result = batch.run()
    assert result.pending == ["rhvnode3"] and wf.store.node_state("rhvnode3").state == S.NETBOOT
    assert wf.store.active_build("rhvnode3").boots_install
    assert disarm_after_abort(wf, run.id, ["rhvnode3"]) == ["rhvnode3"]
    st = wf.store.node_state("rhvnode3")
    assert (st.state, st.failed_step) == (S.FAILED, S.NETBOOT) and "disarmed" in st.fail_reason
    assert wf.store.active_build("rhvnode3") is None
    assert "set default=install" not in wf.renderer.render("rhvnode3", "grub").text  # boots its disk again
    assert wf.power.bmcs.get("rhvnode3") is None or wf.power.bmcs["rhvnode3"].cycles() == 0
    result = _retry(wf, "rhvnode3")
    assert result.done == ["rhvnode3"], wf.store.node_state("rhvnode3").fail_reason
    assert wf.power.bmcs["rhvnode3"].cycles() == 1
    assert any("netboot -> arm (resume)" in e.message or "failed -> arm (resume)" in e.message
               for e in wf.store.events("rhvnode3"))


@pytest.mark.parametrize("state, new, reason, want", [
    (S.RETIRE, S.FAILED, "engine down", (S.RETIRE, "engine down")),   # a failure names its step and cause
    (S.FAILED, S.RETIRE, None, (None, None)),                         # a retry clears them
    (S.DONE, S.PREFLIGHT, None, (None, None)),                        # a new rebuild starts clean
    (S.READY, S.PREFLIGHT, None, (None, None)),
    (S.DRAIN, S.RETIRE, None, "keep"),                                # any other move keeps them
])
def test_what_a_move_does_to_the_failure_record(state, new, reason, want):
    """The state machine's rule (workflow/machine.py), not the store's."""
    from provision.store.tables import KEEP
    from provision.workflow.machine import failure_after

    got = failure_after(state, new, reason)
    assert (got is KEEP) if want == "keep" else got == want


def _starts(store, names) -> list[str]:
    """`names` in the order their latest rebuild started, from the event log."""
    def last_start(n):
        return [e.ts for e in store.events(n) if e.kind == "transition" and "(start)" in e.message][-1]
    return sorted(names, key=last_start)


def _set_last(store, **seconds):
    from sqlalchemy import update

    from provision.store.tables import N
    with store.db.write() as tx:
        for name, value in seconds.items():
            tx.execute(update(N).where(N.c.name == name).values(last_rebuild_seconds=value))


def test_a_rebuild_records_its_duration_and_the_next_batch_starts_the_longest_first(wf):
    result, _ = run_batch(wf, max_parallel=1)
    assert result.ok
    took = {n: wf.store.node_state(n).last_rebuild_seconds for n in NAMES}
    for n in NAMES:
        ev = [e.ts for e in wf.store.events(n) if e.kind == "transition"]
        assert took[n] == pytest.approx((ev[-1] - ev[0]).total_seconds(), abs=0.05)  # start to done
    assert _starts(wf.store, NAMES) == NAMES  # nothing recorded before: as listed
    _set_last(wf.store, rhvnode3=10.0, rhvnode4=30.0, rhvnode5=20.0)
    result, _ = run_batch(wf, max_parallel=1)
    assert result.ok and _starts(wf.store, NAMES) == ["rhvnode4", "rhvnode5", "rhvnode3"]


@pytest.mark.parametrize("order,canary,last,want", [
    ("longest_first", 0, {"rhvnode3": 10.0, "rhvnode4": 30.0, "rhvnode5": None},
     ["rhvnode5", "rhvnode4", "rhvnode3"]),  # never rebuilt: first
    ("longest_first", 1, {"rhvnode3": 10.0, "rhvnode4": 30.0, "rhvnode5": 20.0},
     ["rhvnode3", "rhvnode4", "rhvnode5"]),  # the canary is the first listed, whatever it took
    ("longest_first", 0, {"rhvnode3": None, "rhvnode4": None, "rhvnode5": None}, NAMES),  # stable
    ("as_listed", 0, {"rhvnode3": 10.0, "rhvnode4": 30.0, "rhvnode5": 20.0}, NAMES),
])
def test_start_order(wf, order, canary, last, want):
    from provision.workflow.batch import start_order
    _set_last(wf.store, **last)
    states = wf.store.node_states(NAMES)
    got = start_order(states, NAMES, canary, order)
    assert got == want and start_order(states, got, canary, order) == got  # ordering again changes nothing


def test_a_node_part_way_starts_before_the_longest(wf):
    from provision.workflow.batch import start_order
    _set_last(wf.store, rhvnode3=10.0, rhvnode4=30.0, rhvnode5=20.0)
    advance(wf.store, "rhvnode3", "start")
    assert start_order(wf.store.node_states(NAMES), NAMES, 0, "longest_first") == ["rhvnode3", "rhvnode4", "rhvnode5"]
