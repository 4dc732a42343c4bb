"""IPMI power driver against OpenIPMI's ipmi_sim over real UDP sockets."""

from __future__ import annotations

import time

import pytest

from provision.domain import Bmc
from provision.errors import InputError
from provision.power import PowerAuthError, PowerRejected, PowerUnreachable
from provision.power.ipmi import BmcLocks, IpmiDriver

from .ipmisim import free_udp_port, start_bmc


@pytest.fixture
def sim(tmp_path):
    bmc = start_bmc(tmp_path, "bmc1")
    yield bmc
    bmc.stop()


def driver(tmp_path, port, password="password", **kw) -> IpmiDriver:
    pw = tmp_path / f"pw-{port}-{password}"
    pw.write_text(password + "\n")
    bmc = Bmc(address="127.0.0.1", port=port, username="admin", password_file=str(pw))
    return IpmiDriver("node1", bmc, kw.pop("locks", BmcLocks()), **kw)


def test_netboot_uefi_on_a_running_node_sets_pxe_then_cycles_once(sim, tmp_path):
    sim.set_power(True)
    d = driver(tmp_path, sim.port)
    assert d.get_power_state() == "on"
    assert d.netboot(uefi=True) == "cycle"
    assert sim.sets() == ["set boot pxe", "set power 0", "set power 1"]


def test_netboot_on_a_node_that_is_off_powers_on(sim, tmp_path):
    sim.set_power(False)
    assert driver(tmp_path, sim.port).netboot(uefi=False) == "on"
    assert sim.sets() == ["set boot pxe", "set power 1"]


def test_two_operations_in_a_row_on_one_bmc(sim, tmp_path):
    d = driver(tmp_path, sim.port)
    d.set_power_state("on")
    assert d.get_power_state() == "on"
    d.set_power_state("off")
    assert d.get_power_state() == "off"
    d.set_boot_device("network", uefi=True)
    assert sim.sets() == ["set power 1", "set power 0", "set boot pxe"]


def test_wrong_password_is_clear_and_does_not_poison_the_next_session(sim, tmp_path):
    bad = driver(tmp_path, sim.port, password="hunter2")
    with pytest.raises(PowerAuthError) as exc:
        bad.get_power_state()
    msg = str(exc.value)
    assert "node node1" in msg and f"127.0.0.1:{sim.port}" in msg and "hunter2" not in msg
    assert driver(tmp_path, sim.port).get_power_state() in ("on", "off")


def test_dead_bmc_is_unreachable_after_bounded_retries(tmp_path):
    d = driver(tmp_path, free_udp_port(), attempts=2, backoff=0.1, timeout=20)
    t0 = time.monotonic()
    with pytest.raises(PowerUnreachable) as exc:
        d.get_power_state()
    assert "node node1" in str(exc.value) and "127.0.0.1" in str(exc.value)
    assert time.monotonic() - t0 < 30


def test_bmc_that_rejects_the_boot_device(tmp_path):
    sim = start_bmc(tmp_path, "nochassis", chassis=False)
    try:
        with pytest.raises(PowerRejected) as exc:
            driver(tmp_path, sim.port).set_boot_device("network", uefi=True)
        assert "node node1" in str(exc.value)
    finally:
        sim.stop()


def test_validate_needs_no_network(tmp_path):
    bmc = Bmc(address="127.0.0.1", port=9, username="admin", password_file=str(tmp_path / "missing"))
    with pytest.raises(InputError, match="password_file"):
        IpmiDriver("node1", bmc, BmcLocks()).validate()


def test_netboot_once_is_at_most_once_across_drivers(sim, tmp_path):
    sim.set_power(True)
    state = tmp_path / "power"
    first = IpmiDriver("node1", driver(tmp_path, sim.port).bmc, BmcLocks(), state_dir=state)
    assert first.netboot(uefi=True, once="node1-build7") == "cycle"
    again = IpmiDriver("node1", first.bmc, BmcLocks(), state_dir=state)  # e.g. a resumed process
    assert again.netboot(uefi=True, once="node1-build7") == "already"
    assert sim.sets() == ["set boot pxe", "set power 0", "set power 1"]
    assert again.netboot(uefi=True, once="node1-build8") == "cycle"  # a new build is a new operation
    assert sim.sets().count("set power 0") == 2


def test_netboot_refuses_to_cycle_when_the_bmc_does_not_keep_the_boot_device(sim, tmp_path):
    sim.set_power(True)
    (sim.dir / "forget_boot").write_text("")
    with pytest.raises(PowerRejected) as exc:
        driver(tmp_path, sim.port).netboot(uefi=True)
    msg = str(exc.value)
    assert f"127.0.0.1:{sim.port}" in msg and "node node1" in msg and "read back as" in msg and "not network" in msg
    assert sim.sets() == ["set boot pxe"]  # never power-cycled into a local boot
    assert "get boot" in sim.calls()


def test_boot_flag_timeout_is_disabled_before_the_device_is_set_and_read_back():
    from provision.power import ipmi_worker

    class Recorder:
        def __init__(self):
            self.calls = []

        def raw_command(self, netfn, command, data=()):
            self.calls.append(("raw", netfn, command, tuple(data)))
            return {"data": bytearray(b"\x01\x05\x80\x04\x00\x00\x00")} if command == 9 else {"data": b""}

        def set_bootdev(self, dev, persist=False, uefiboot=False):
            self.calls.append(("set_bootdev", dev, persist, uefiboot))
            return {"bootdev": dev}

    rec = Recorder()
    ipmi_worker._network_boot(rec, False, True)
    assert rec.calls == [("raw", 0, 8, (3, 8)), ("set_bootdev", "network", False, True), ("raw", 0, 9, (5, 0, 0))]
