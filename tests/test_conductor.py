"""The conductor in process, with fakes: leases, a submitted run to done, abort, pause and
continue, takeover of an expired lease; and the rebuild API's refusals."""

from __future__ import annotations

import time

import pytest

from provision.workflow import callbacks
from provision.workflow import states as S
from provision.workflow.conductor import Conductor

from .workflow_helpers import NAMES, FakeInstaller, build_wf, cycled


@pytest.fixture
def wf(tmp_path):
    svc = build_wf(tmp_path)
    yield svc
    svc.close()


def _until(what: str, fn, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def _finished(store, run_id: int):
    return lambda: (r := store.rebuild(run_id)).finished and r


def _conductor(svc, **kw) -> Conductor:
    return Conductor(svc, lease=kw.pop("lease", 5.0), poll=0.05, **kw).start()


def test_a_lease_is_held_by_one_owner_and_taken_over_when_it_expires(wf):
    store = wf.store
    run = store.create_rebuild(NAMES, {"max_parallel": 1}, runner="service")
    cli_run = store.create_rebuild(["rhvnode3"], {})  # a `provision rebuild` process's run: never claimed
    assert store.claim_rebuild("a", 60).id == run.id
    assert store.claim_rebuild("b", 60) is None  # held by a
    assert store.renew_lease(run.id, "a", 60) == "run"
    assert store.renew_lease(run.id, "b", 60) is None
    assert store.renew_lease(run.id, "a", 0.2) == "run"  # a's last renewal; then it is killed
    time.sleep(0.3)  # its lease runs out
    taken = store.claim_rebuild("b", 5)
    assert taken.id == run.id and taken.owner == "b" and taken.status == "running"
    assert store.renew_lease(run.id, "a", 5) is None  # a learns it lost the run
    assert not store.release_rebuild(run.id, "a", "done")
    assert store.release_rebuild(run.id, "b", "done", {"done": NAMES})
    assert store.rebuild(run.id).summary == {"done": NAMES} and store.rebuild(run.id).finished_at is not None
    assert store.claim_rebuild("c", 5) is None and store.rebuild(cli_run.id).owner is None


def test_a_submitted_run_goes_to_done_in_the_conductor(wf):
    run = wf.store.create_rebuild(NAMES, {"max_parallel": 2, "canary": 1}, runner="service")
    installer = FakeInstaller(wf, cycled(wf), callbacks.handle)
    installer.start()
    conductor = _conductor(wf)
    try:
        ended = _until("the run to end", _finished(wf.store, run.id))
    finally:
        conductor.stop()
        installer.stop.set()
    assert ended.status == "done", ended
    assert sorted(ended.summary["done"]) == NAMES and ended.summary["peak_in_flight"] == 2
    assert ended.owner is None and ended.lease_until is None
    assert all(wf.store.node_state(n).state == S.DONE and wf.store.node_state(n).rebuild_id == run.id for n in NAMES)
    assert all(wf.power.bmcs[n].cycles() == 1 for n in NAMES)


def test_abort_lets_the_node_in_flight_finish_its_step_and_starts_no_other(wf):
    run = wf.store.create_rebuild(NAMES, {"max_parallel": 1, "canary": 0}, runner="service")
    conductor = _conductor(wf)  # no installer: the first node waits in `installing`
    try:
        _until("the first node to wait for its installer", lambda: wf.store.node_state("rhvnode3").state == S.INSTALLING)
        wf.store.control_rebuild(run.id, "abort")
        conductor.wake()
        ended = _until("the run to end", _finished(wf.store, run.id))
    finally:
        conductor.stop()
    assert ended.status == "aborted" and ended.summary["pending"] == NAMES, ended
    assert wf.store.node_state("rhvnode3").state == S.INSTALLING  # stopped between steps, not undone
    assert [wf.store.node_state(n).state for n in NAMES[1:]] == [S.READY, S.READY]
    with pytest.raises(Exception, match="has ended"):
        wf.store.control_rebuild(run.id, "continue")


def test_pause_drains_the_nodes_in_flight_and_continue_starts_the_rest(wf):
    run = wf.store.create_rebuild(NAMES[:2], {"max_parallel": 1, "canary": 0}, runner="service")
    conductor = _conductor(wf)
    installer = FakeInstaller(wf, cycled(wf), callbacks.handle)
    try:
        _until("the first node to wait for its installer", lambda: wf.store.node_state("rhvnode3").state == S.INSTALLING)
        wf.store.control_rebuild(run.id, "pause")
        conductor.wake()
        installer.start()  # the node in flight finishes its rebuild; the second does not start
        _until("the run to pause", lambda: wf.store.rebuild(run.id).status == "paused")
        assert wf.store.node_state("rhvnode3").state == S.DONE and wf.store.node_state("rhvnode4").state == S.READY
        assert wf.store.rebuild(run.id).owner is None  # handed back: any serve may continue it
        wf.store.control_rebuild(run.id, "continue")
        conductor.wake()
        ended = _until("the run to end", _finished(wf.store, run.id))
    finally:
        conductor.stop()
        installer.stop.set()
    assert ended.status == "done" and ended.summary["done"] == ["rhvnode4"], ended  # rhvnode3 was not redone
    assert wf.power.bmcs["rhvnode3"].cycles() == 1 and wf.power.bmcs["rhvnode4"].cycles() == 1


def test_a_second_conductor_takes_over_a_run_whose_holder_stopped_renewing(wf):
    """The holder's process is stuck (no heartbeat): its lease runs out, the other conductor takes
    the run and resumes its nodes from their states; the first learns it lost the run and stops."""
    run = wf.store.create_rebuild(NAMES[:2], {"max_parallel": 2, "canary": 0}, runner="service")
    first = _conductor(wf, lease=3.0, owner="first")
    _until("both nodes to wait for their installer",
           lambda: all(wf.store.node_state(n).state == S.INSTALLING for n in NAMES[:2]))
    first._stop.set()  # it does nothing more, as if its process were killed: no renewals, no steps
    first._wake.set()
    for held in list(first.held.values()):
        held.batch.stop.set()
    second = _conductor(wf, lease=1.0, owner="second")
    installer = FakeInstaller(wf, cycled(wf), callbacks.handle)
    try:
        _until("the second conductor to hold the run", lambda: wf.store.rebuild(run.id).owner == "second")
        installer.start()
        ended = _until("the run to end", _finished(wf.store, run.id))
    finally:
        second.stop()
        installer.stop.set()
    assert ended.status == "done" and sorted(ended.summary["done"]) == NAMES[:2], ended
    assert all(wf.power.bmcs[n].cycles() == 1 for n in NAMES[:2])  # resumed, not power-cycled again


def test_a_conductor_that_finds_its_lease_taken_stops_driving_the_run(wf):
    """Another serve took the run over (this one's lease had expired, e.g. the database was out of
    reach): at its next heartbeat this one stops its batch and leaves the run alone."""
    from sqlalchemy import text

    run = wf.store.create_rebuild(["rhvnode3"], {"max_parallel": 1, "canary": 0}, runner="service")
    conductor = _conductor(wf, owner="first")
    try:
        _until("the node to wait for its installer", lambda: wf.store.node_state("rhvnode3").state == S.INSTALLING)
        with wf.store.engine.begin() as conn:
            conn.execute(text("UPDATE rebuilds SET owner = 'second' WHERE id = :id"), {"id": run.id})
        _until("the conductor to let the run go", lambda: not conductor.held)
    finally:
        conductor.stop()
    taken = wf.store.rebuild(run.id)
    assert (taken.owner, taken.status, taken.summary) == ("second", "running", None)
    assert wf.store.node_state("rhvnode3").state == S.INSTALLING  # left for the new holder to drive


def test_the_rebuild_api_validates_submits_and_controls(wf):
    from provision.web import create_app

    app = create_app(wf, admin_token="t" * 32, secret_key="k" * 32)
    client = app.test_client()
    auth = {"Authorization": "Bearer " + "t" * 32}
    assert client.post("/api/v1/rebuilds", json={"nodes": ["rhvnode3"]}).status_code == 401
    for body, field in (({"nodes": ["rhvnode3"], "max_parallel": 0}, "max_parallel"),
                        ({"nodes": ["rhvnode3"], "bogus": 1}, "bogus"),
                        ({"nodes": ["rhvnode3"], "cluster": "c"}, "give nodes or cluster, not both"),
                        ({"nodes": ["rhvnode3"], "canary": 2}, "--canary 2: only 1 node(s) selected")):
        r = client.post("/api/v1/rebuilds", json=body, headers=auth)
        assert r.status_code == 400 and field in r.json["error"], (body, r.json)
    r = client.post("/api/v1/rebuilds", json={"nodes": ["ghost"]}, headers=auth)
    assert r.status_code == 404 and "ghost" in r.json["error"]
    plan = client.post("/api/v1/rebuilds", json={"cluster": "ocpcluster", "max_parallel": 2, "dry_run": True},
                       headers=auth)
    assert plan.status_code == 200 and plan.json["waves"] == 2 and wf.store.rebuilds() == []
    r = client.post("/api/v1/rebuilds", json={"nodes": NAMES, "max_parallel": 2}, headers=auth)
    assert r.status_code == 202 and r.headers["Location"] == f"/api/v1/rebuilds/{r.json['id']}"
    run_id = r.json["id"]
    assert r.json["status"] == "queued" and [n["name"] for n in r.json["nodes"]] == NAMES
    again = client.post("/api/v1/rebuilds", json={"nodes": ["rhvnode4"]}, headers=auth)
    assert again.status_code == 400 and f"node rhvnode4: in rebuild {run_id}" in again.json["error"]
    assert client.post(f"/api/v1/rebuilds/{run_id}/pause", headers=auth).json["control"] == "pause"
    shown = client.get(f"/api/v1/rebuilds/{run_id}", headers=auth).json
    assert shown["control"] == "pause" and shown["status"] == "queued"
    aborted = client.post(f"/api/v1/rebuilds/{run_id}/abort", headers=auth)
    assert aborted.status_code == 202 and aborted.json["status"] == "aborted"  # never started: ended at once
    late = client.post(f"/api/v1/rebuilds/{run_id}/continue", headers=auth)
    assert late.status_code == 409 and "has ended (aborted)" in late.json["error"]
    assert client.get("/api/v1/rebuilds/999", headers=auth).status_code == 404
    listed = client.get("/api/v1/rebuilds", headers=auth).json["rebuilds"]
    assert [r["id"] for r in listed] == [run_id] and "nodes" not in listed[0]


def test_a_submitted_run_and_its_plan_list_the_nodes_in_the_order_they_start(wf):
    from provision.web import create_app

    from .test_workflow import _set_last
    _set_last(wf.store, rhvnode3=10.0, rhvnode4=30.0, rhvnode5=20.0)  # their last rebuilds took this long
    client = create_app(wf, admin_token="t" * 32, secret_key="k" * 32).test_client()
    auth = {"Authorization": "Bearer " + "t" * 32}
    plan = client.post("/api/v1/rebuilds", json={"nodes": NAMES, "canary": 0, "dry_run": True}, headers=auth).json
    assert [e["node"] for e in plan["plan"]] == ["rhvnode4", "rhvnode5", "rhvnode3"]
    plan = client.post("/api/v1/rebuilds", json={"nodes": NAMES, "dry_run": True}, headers=auth).json
    assert [e["node"] for e in plan["plan"]] == ["rhvnode3", "rhvnode4", "rhvnode5"]  # the canary: as listed
    r = client.post("/api/v1/rebuilds", json={"nodes": NAMES, "canary": 0}, headers=auth)
    assert r.status_code == 202 and wf.store.rebuild(r.json["id"]).nodes == ["rhvnode4", "rhvnode5", "rhvnode3"]


def test_a_run_naming_a_node_gone_from_the_inventory_fails_and_says_why(wf):
    from sqlalchemy import text

    run = wf.store.create_rebuild(["rhvnode3"], {}, runner="service")
    with wf.store.engine.begin() as conn:  # as if its inventory entry had been replaced meanwhile
        conn.execute(text("UPDATE rebuilds SET nodes = :n WHERE id = :id"), {"n": '["ghost"]', "id": run.id})
    conductor = _conductor(wf)
    try:
        ended = _until("the run to end", _finished(wf.store, run.id))
    finally:
        conductor.stop()
    assert ended.status == "failed" and "ghost" in ended.summary["error"] and ended.owner is None, ended


def test_a_local_run_is_held_by_its_process_under_a_lease_and_is_aborted_there_or_at_once_when_gone(wf):
    """`rebuild --local` holds its run under a lease: an abort asked through the API reaches the
    process at its next renewal; a run whose process is gone is shown so (`runner_gone`) and an abort
    ends it at once. It used to stay "running" for good, and an abort said "stop it there"."""
    from provision.workflow.batch import Batch
    from provision.workflow.lease import Keeper

    run = wf.store.create_rebuild(["rhvnode3"], {})
    keeper = Keeper(wf.store, run.id, lease=0.5).take()
    batch = Batch(wf, ["rhvnode3"], rebuild_id=run.id)
    keeper.keep(batch)
    assert not wf.store.runner_gone(wf.store.rebuild(run.id))
    assert wf.store.control_rebuild(run.id, "abort").control == "abort"
    _until("the process to see the abort", batch.stop.is_set, timeout=30)
    keeper.release("stopped", {"done": [], "failed": [], "pending": ["rhvnode3"], "error": None})
    assert wf.store.rebuild(run.id).status == "aborted"

    gone = wf.store.create_rebuild(["rhvnode4"], {})
    Keeper(wf.store, gone.id, lease=0.2).take()  # ... and that process is killed: nothing renews it
    _until("the lease to run out", lambda: wf.store.runner_gone(wf.store.rebuild(gone.id)), timeout=30)
    with pytest.raises(Exception, match="its runner is gone .lease expired.: abort it, or take its nodes over"):
        wf.store.control_rebuild(gone.id, "pause")
    ended = wf.store.control_rebuild(gone.id, "abort")
    assert (ended.status, ended.owner) == ("aborted", None) and "runner was gone" in ended.summary["error"]


def test_the_cli_submits_and_waits_for_the_runs_result(wf, tmp_path):
    """`provision rebuild --wait` submits to the service (here a conductor in this process, on the
    same database) and exits with the run's result: 1 when a node failed; `--detach` returns at
    once with the run's id."""
    from click.testing import CliRunner

    from provision.cli import main

    cfg = str(tmp_path / "provision.toml")
    installer = FakeInstaller(wf, cycled(wf), callbacks.handle, fail={"rhvnode4"})
    installer.start()
    conductor = _conductor(wf)
    try:
        res = CliRunner().invoke(main, ["--config", cfg, "rebuild", "rhvnode3", "rhvnode4", "--canary", "0",
                                        "--max-parallel", "2", "--yes", "--wait"])
        detached = CliRunner().invoke(main, ["--config", cfg, "rebuild", "rhvnode5", "--yes", "--detach"])
        run5 = int(detached.stdout.strip())
        _until("the detached run to end", _finished(wf.store, run5))
    finally:
        conductor.stop()
        installer.stop.set()
    assert res.exit_code == 1, res.output
    assert "failed: done: 1, failed: 1, not finished: 0" in res.output
    assert "rhvnode4: failed in installing: the node reported a failure" in res.output
    assert "rhvnode3: " not in res.output.split("submitted")[1].split("failed: done")[0]  # --wait: no progress lines
    assert detached.exit_code == 0 and wf.store.rebuild(run5).status == "done"
    assert f"Follow it: provision watch {run5}" in detached.output


def test_a_continue_that_comes_while_the_holder_drains_for_a_pause_is_not_lost(wf):
    """The holder saw the pause and drains; the operator continues before it has released the
    run: released, the run is queued again (taken and finished), not left paused with control
    "run" and nobody to continue it."""
    run = wf.store.create_rebuild(["rhvnode3"], {}, runner="service")
    assert wf.store.claim_rebuild("a", 60).id == run.id
    wf.store.control_rebuild(run.id, "pause")
    wf.store.control_rebuild(run.id, "continue")  # before the holder released it as paused
    assert wf.store.release_rebuild(run.id, "a", "paused")
    again = wf.store.rebuild(run.id)
    assert (again.status, again.control) == ("queued", "run")
    assert wf.store.claim_rebuild("b", 60).id == run.id
    other = wf.store.create_rebuild(["rhvnode4"], {}, runner="service")
    assert wf.store.claim_rebuild("c", 60).id == other.id
    wf.store.control_rebuild(other.id, "pause")
    assert wf.store.release_rebuild(other.id, "c", "paused") and wf.store.rebuild(other.id).status == "paused"
