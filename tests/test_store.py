"""Store guarantees the workflow relies on."""

from __future__ import annotations

import threading

import pytest

from provision import config as config_mod
from provision import services
from provision.domain import load_yaml, parse_nodes

from .conftest import EXAMPLE, use_db, write_config

MAC3 = "0c:c4:7a:3b:03:01"


@pytest.fixture(params=["sqlite", "postgresql"])
def svc(request, tmp_path):
    """Every store guarantee on SQLite and on a real PostgreSQL server."""
    cfg = write_config(tmp_path)
    if request.param == "postgresql":
        use_db(cfg, request.getfixturevalue("pg").new_database())
    s = services.build(config_mod.load(cfg))
    yield s
    s.close()


def test_compare_and_set_has_exactly_one_winner_under_contention(svc):
    svc.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    for round_ in range(15):
        expected = f"s{round_}"
        svc.store.compare_and_set_state("rhvnode3", svc.store.node_state("rhvnode3").state, expected, "setup")
        barrier = threading.Barrier(8)
        wins = []

        def contender(i: int, expected=expected, round_=round_, barrier=barrier, wins=wins) -> None:
            barrier.wait()
            if svc.store.compare_and_set_state("rhvnode3", expected, f"t{round_}-{i}", "race"):
                wins.append(i)

        threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1, (round_, wins)
        assert svc.store.node_state("rhvnode3").state == f"t{round_}-{wins[0]}"


def test_concurrent_step_data_updates_are_not_lost(svc):
    svc.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    barrier = threading.Barrier(8)

    def writer(i: int) -> None:
        barrier.wait()
        for j in range(20):
            svc.store.update_data("rhvnode4", **{f"w{i}-{j}": j})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(svc.store.node_state("rhvnode4").data) == 8 * 20


def test_reimport_never_drops_snapshots_or_state(svc):
    svc.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    svc.store.compare_and_set_state("rhvnode5", "ready", "installing", "x")
    data = load_yaml(EXAMPLE.read_text(), "x")
    data["nodes"] = [n for n in data["nodes"] if n["name"] == "rhvnode5"]
    data["nodes"][0].pop("facts")
    svc.store.import_nodes(parse_nodes(data))
    assert svc.store.node_state("rhvnode5").state == "installing"
    assert len(svc.store.snapshots("rhvnode5")) == 1


def test_a_failing_write_fails_alone_and_leaves_nothing(svc):
    """Every write is one transaction (store/db.py): one that fails is rolled back whole, its caller
    gets the error, and the writers around it land."""
    from provision.errors import InputError, NotFound

    store = svc.store
    store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    names = ["rhvnode3", "rhvnode4", "nosuchnode", "rhvnode5"]
    results: dict[str, object] = {}

    def writer(name: str) -> None:
        try:
            results[name] = store.update_data(name, queued=name)
        except NotFound as exc:
            results[name] = exc

    threads = [threading.Thread(target=writer, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(results["nosuchnode"], NotFound) and "nosuchnode" in str(results["nosuchnode"])
    for name in ("rhvnode3", "rhvnode4", "rhvnode5"):
        assert results[name]["queued"] == name and store.node_state(name).data["queued"] == name
    # a snapshot whose MAC another node has: the address check fails inside the write, and neither
    # the snapshot nor the node's generation nor its addresses moved
    before = (len(store.snapshots("rhvnode3")), store.node_generation("rhvnode3"), store.node_for_mac(MAC3))
    facts = store.snapshot("rhvnode4").facts
    with pytest.raises(InputError, match="also used by node"):
        store.add_snapshot("rhvnode3", facts, "api")
    assert (len(store.snapshots("rhvnode3")), store.node_generation("rhvnode3"), store.node_for_mac(MAC3)) == before


def test_one_generation_bump_for_what_a_node_is_served_and_none_for_a_move(svc):
    """Facts, builds and the inventory entry move a node's generation (caches re-render it); a state
    move or step data does not, and nothing else moves any other node's."""
    store = svc.store
    store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    seen: list[dict] = []
    store.subscribe(seen.append)
    gen = store.node_generation
    g0, other = gen("rhvnode3"), gen("rhvnode4")
    store.compare_and_set_state("rhvnode3", "ready", "preflight", "x")
    store.update_data("rhvnode3", k="v")
    store.add_event("rhvnode3", "note", "n")
    assert gen("rhvnode3") == g0 and seen == []
    build, _ = store.arm("rhvnode3", svc.key, 600)
    g1 = gen("rhvnode3")
    assert g1 > g0 and seen == [{"rhvnode3": g1}]
    store.set_boot_local(build.id)
    store.end_build("rhvnode3", "done")
    store.add_snapshot("rhvnode3", store.snapshot("rhvnode3").facts, "api")
    assert [list(c) for c in seen] == [["rhvnode3"]] * 4
    assert gen("rhvnode3") == store.generation() and gen("rhvnode4") == other
    assert store.changed_since(g0)[1].keys() == {"rhvnode3"}


def test_what_is_stored_reads_back_the_same(svc):
    """Dates (a whole second included), JSON, NULLs and unicode, written by the store and read back
    through plain SQLAlchemy and through the store."""
    from datetime import datetime

    from sqlalchemy import select, update

    from provision.store.models import BuildRow, EventRow, NodeRow

    store = svc.store
    store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    data = {"note": "ünïcode ✔", "nested": {"a": [1, 2.5, None, True]}, "none": None}
    moved = store.compare_and_set_state("rhvnode3", "ready", "preflight", "ready -> preflight", rebuild_id=7,
                                        data=data, events=[("capture", "a step's note")])
    assert moved.state == "preflight" and moved.rebuild_id == 7
    assert moved.data == {"note": "ünïcode ✔", "nested": {"a": [1, 2.5, None, True]}}  # None removes a key
    with store.engine.begin() as conn:
        row = conn.execute(select(NodeRow.__table__).where(NodeRow.name == "rhvnode3")).one()
        assert (row.state, row.rebuild_id, row.data, row.step_started_at) == (
            "preflight", 7, moved.data, moved.step_started_at)
        events = conn.execute(select(EventRow.__table__).where(EventRow.node_id == row.id).order_by(EventRow.id)).all()
        assert [(e.kind, e.message, e.ts) for e in events[-2:]] == [
            ("capture", "a step's note", moved.step_started_at), ("transition", "ready -> preflight", moved.step_started_at)]
        conn.execute(update(NodeRow.__table__).where(NodeRow.id == row.id)
                     .values(step_started_at=datetime(2026, 11, 23, 9, 0, 0)))  # no microseconds: a format corner
    assert store.node_state("rhvnode3").step_started_at == datetime(2026, 11, 23, 9, 0, 0)
    build, _ = store.arm("rhvnode3", svc.key, 600)
    assert store.active_build("rhvnode3") == build and store.build_by_digest("nope") is None
    assert store.set_boot_local(build.id) and not store.set_boot_local(build.id)
    store.end_build("rhvnode3", "done")
    assert store.active_build("rhvnode3") is None
    with store.engine.connect() as conn:
        b = conn.execute(select(BuildRow.__table__).where(BuildRow.id == build.id)).one()
        assert (b.created_at, b.expires_at, b.end_reason) == (build.created_at, build.expires_at, "done")
        assert b.boot_local_at is not None and b.ended_at is not None


def test_run_leases_are_judged_on_the_databases_clock_not_a_skewed_serves(svc, monkeypatch):
    """Two `serve` processes on two hosts, one of whose clocks is an hour fast: the fast one must not
    take a run whose holder renewed its 60 s lease a moment ago, nor hand itself a lease that the other
    would see as an hour long. Leases were computed from each process's own wall clock."""
    from datetime import timedelta

    from provision.store import clock
    from provision.store import runs as runs_mod

    run = svc.store.create_rebuild(["rhvnode3"], {}, runner="service")
    assert svc.store.claim_rebuild("a", 60).id == run.id
    real = clock.utcnow
    monkeypatch.setattr(runs_mod, "utcnow", lambda: real() + timedelta(hours=1))  # serve b's clock
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(hours=1))
    assert svc.store.claim_rebuild("b", 60) is None, "a fast clock took a run under a live lease"
    assert svc.store.renew_lease(run.id, "a", 60) == "run"
    held = svc.store.rebuild(run.id).lease_until
    assert abs((held - real()).total_seconds() - 60) < 30, f"lease until {held}: not 60 s on the database's clock"
