"""`provision rebuild` refusals and dry-run, `provision status`: exit codes and output."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from provision import config as config_mod
from provision import services
from provision.cli import main
from provision.integrations.fakestate import FakeState
from provision.store.tables import N
from provision.workflow.machine import advance

from .conftest import write_config
from .workflow_helpers import NAMES, import_nodes, loopback_inventory, seed_fakes


@pytest.fixture
def cli(tmp_path):
    cfg = write_config(tmp_path, extra=f'\n[integrations]\nfake_dir = "{tmp_path}/fakes"\n')
    svc = services.build(config_mod.load(cfg))
    (tmp_path / "bmc.pw").write_text("password\n")
    import_nodes(svc.store, loopback_inventory(pw_file=str(tmp_path / "bmc.pw")))
    seed_fakes(*(FakeState(tmp_path / "fakes" / f"{k}.json") for k in ("engine", "ipa", "satellite")))
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, ["--config", str(cfg), *args])

    run.svc, run.tmp = svc, tmp_path
    yield run
    svc.close()


def test_dry_run_prints_plan_and_touches_nothing(cli):
    def engine_now() -> dict:  # the fake engine's hosts (its `calls` log records the gate's reads too)
        return {k: v for k, v in json.loads((cli.tmp / "fakes" / "engine.json").read_text()).items() if k != "calls"}

    engine_before = engine_now()
    res = cli("rebuild", "--cluster", "ocpcluster", "--max-parallel", "2", "--canary", "1", "--min-up", "1", "--dry-run",
              "--verbose")
    assert res.exit_code == 0, res.output
    assert "3 node(s), 2 wave(s), at most 2 in flight, keep 1 Up per cluster" in res.output
    assert "wave 1: rhvnode3 (canary, alone)" in res.output and "wave 2: rhvnode4" in res.output and "wave 2: rhvnode5" in res.output
    assert "bmc 127.0.0.1:16624: one-shot boot from network (uefi=True)" in res.output
    assert "engine: setupnetworks (bond0 mode=802.3ad,lacp_rate=fast,miimon=100,xmit_hash_policy=layer3+4" in res.output
    assert "storage@bond1.20 198.51.100.14/24" in res.output
    assert engine_now() == engine_before
    assert "  gate       FAIL: stops in preflight, before anything is deleted" in res.output  # no media served here
    assert "FAIL media: node rhvnode3: media 'rhvh' is not served as the node will fetch it" in res.output
    assert all(cli.svc.store.node_state(n).state == "ready" for n in NAMES)
    assert cli.svc.store.rebuilds() == []
    # without --verbose: a line per node and the total
    res = cli("rebuild", "--cluster", "ocpcluster", "--max-parallel", "2", "--dry-run")
    lines = res.output.splitlines()
    assert res.exit_code == 0 and len(lines) == 8, res.output
    assert lines[2].split() == ["WAVE", "NODE", "GATE", "LAST", "DETAIL"]
    assert lines[3].split()[:5] == ["1", "rhvnode3", "(canary)", "FAIL", "-"] and "media: node rhvnode3" in lines[3]
    assert [line.split()[:2] for line in lines[4:6]] == [["2", "rhvnode4"], ["2", "rhvnode5"]]
    assert lines[-1].startswith("total: 3 node(s), 0 pass the gate, 3 would stop in preflight before anything is "
                                "deleted (rhvnode3, rhvnode4, rhvnode5); no estimate")
    for n, took in (("rhvnode3", 1500.0), ("rhvnode4", 1200.0), ("rhvnode5", 600.0)):
        with cli.svc.store.db.write() as tx:  # as a finished rebuild records it
            tx.execute(N.update().where(N.c.name == n).values(last_rebuild_seconds=took))
    res = cli("rebuild", "--cluster", "ocpcluster", "--max-parallel", "2", "--dry-run")
    # the canary alone (25 min), then rhvnode4 and rhvnode5 side by side (20 min)
    assert "; estimated 45 min 00 s from the last rebuilds (3 recorded)" in res.output.splitlines()[-1]
    assert "25 min 00 s" in res.output.splitlines()[3]
    plan = json.loads(cli("rebuild", "rhvnode5", "--dry-run", "--json").output)
    assert plan["plan"][0]["node"] == "rhvnode5" and len(plan["plan"][0]["calls"]) > 15
    assert "server: /boot/grub/grub.cfg-01-0c-c4-7a-3b-05-01 over HTTP and TFTP" in json.dumps(plan)


def test_a_batch_starts_with_one_canary_unless_told_otherwise(cli):
    plan = json.loads(cli("rebuild", "--cluster", "ocpcluster", "--max-parallel", "3", "--dry-run", "--json").output)
    assert plan["canary"] == 1 and [(p["wave"], p["canary"]) for p in plan["plan"]] == [(1, True), (2, False), (2, False)]
    plan = json.loads(cli("rebuild", "--cluster", "ocpcluster", "--max-parallel", "3", "--canary", "0", "--dry-run",
                          "--json").output)
    assert plan["canary"] == 0 and {p["wave"] for p in plan["plan"]} == {1}


def test_refuses_without_yes_off_a_terminal(cli):
    res = cli("rebuild", "rhvnode3")
    assert res.exit_code == 2 and "without --yes" in res.output
    assert cli.svc.store.node_state("rhvnode3").state == "ready"


def test_refuses_node_without_facts_before_any_action(cli, tmp_path):
    inv = loopback_inventory(pw_file=str(tmp_path / "bmc.pw"))
    bare = dict(inv["nodes"][0], name="bare", fqdn="bare.lab.example.com")
    bare.pop("facts")
    import_nodes(cli.svc.store, {"nodes": [bare]})
    res = cli("rebuild", "bare", "rhvnode3", "--yes")
    assert res.exit_code == 2 and "node bare: no facts snapshot" in res.output
    assert cli.svc.store.node_state("rhvnode3").state == "ready" and cli.svc.store.rebuilds() == []


def test_refuses_unknown_node_and_bad_options(cli):
    assert cli("rebuild", "ghost", "--yes").exit_code == 2
    assert cli("rebuild", "--yes").exit_code == 2
    assert cli("rebuild", "rhvnode3", "--max-parallel", "0", "--yes").exit_code == 2
    res = cli("rebuild", "rhvnode3", "--canary", "2", "--yes")
    assert res.exit_code == 2 and "--canary 2" in res.output


def test_refuses_a_node_part_way_without_resume(cli):
    advance(cli.svc.store, "rhvnode4", "start")
    res = cli("rebuild", "rhvnode4", "--yes")
    assert res.exit_code == 2 and "left part-way through a rebuild (state preflight); --retry takes it over" in res.output


def test_status_table_and_event_log(cli):
    advance(cli.svc.store, "rhvnode4", "start")
    advance(cli.svc.store, "rhvnode4", "fail", reason="engine: host rhvnode4 is non_responsive")
    res = cli("status")
    assert res.exit_code == 0
    line = next(line for line in res.output.splitlines() if line.startswith("rhvnode4"))
    assert "failed" in line and "preflight" in line and "non_responsive" in line
    detail = cli("status", "rhvnode4")
    assert "rhvnode4: failed (failed in preflight: engine: host rhvnode4 is non_responsive)" in detail.output
    assert "ready -> preflight (start)" in detail.output and "preflight -> failed (fail)" in detail.output
    data = json.loads(cli("status", "rhvnode4", "--json").output)
    assert data["failed_step"] == "preflight" and len(data["events"]) == 2
    assert cli("status", "ghost").exit_code == 2
