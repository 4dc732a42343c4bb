"""Store guarantees the workflow relies on."""

from __future__ import annotations

import threading

import pytest

from provision import config as config_mod
from provision import services
from provision.domain import load_yaml, parse_nodes

from .conftest import EXAMPLE, use_db, write_config


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


def test_writes_queued_together_share_one_transaction_and_a_failing_one_fails_alone(svc):
    """Group commit (store/combine.py): writes that queue behind the one being written are done
    in one transaction; when one of them fails, the others still land and only its caller gets
    the error."""
    from provision.errors import NotFound

    store = svc.store
    store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    groups: list[int] = []
    real = store._combiner._transaction

    def counted(ops):
        groups.append(len(ops))
        return real(ops)

    store._combiner._transaction = counted
    names = ["rhvnode3", "rhvnode4", "nosuchnode", "rhvnode5"]
    results: dict[str, object] = {}

    def writer(name: str) -> None:
        try:
            results[name] = store.update_data(name, queued=name)
        except NotFound as exc:
            results[name] = exc

    with store._combiner.exclusive():  # another writer holds the store: the four queue up behind it
        threads = [threading.Thread(target=writer, args=(n,)) for n in names]
        for t in threads:
            t.start()
        queued = threading.Event()
        for _ in range(2000):  # each thread queues at once and then waits for the lock
            if len(store._combiner._pending) == len(names):
                queued.set()
                break
            threading.Event().wait(0.005)
        assert queued.is_set(), store._combiner._pending
    for t in threads:
        t.join()
    assert groups[0] == 4 and groups[1:] == [1, 1, 1, 1]  # the group failed; each was done again alone
    assert isinstance(results["nosuchnode"], NotFound) and "nosuchnode" in str(results["nosuchnode"])
    for name in ("rhvnode3", "rhvnode4", "rhvnode5"):
        assert results[name]["queued"] == name and store.node_state(name).data["queued"] == name


def test_the_prepared_hot_path_stores_what_sqlalchemy_stores(svc):
    """Statements run on the driver's cursor (store/prepared.py) write the same values SQLAlchemy
    writes and read them back the same: dates (a whole second included), JSON, NULLs."""
    from datetime import datetime

    from sqlalchemy import select

    from provision.store.models import BuildRow, EventRow, NodeRow

    store = svc.store
    store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    data = {"note": "ünïcode ✔", "nested": {"a": [1, 2.5, None, True]}, "none": None}
    moved = store.compare_and_set_state("rhvnode3", "ready", "preflight", "ready -> preflight", rebuild_id=7,
                                        data=data, events=[("capture", "a step's note")])
    assert moved.state == "preflight" and moved.rebuild_id == 7
    assert moved.data == {"note": "ünïcode ✔", "nested": {"a": [1, 2.5, None, True]}}  # None removes a key
    with store._session() as s:  # read back through the ORM
        row = s.scalar(select(NodeRow).where(NodeRow.name == "rhvnode3"))
        assert (row.state, row.rebuild_id, row.data, row.step_started_at) == (
            "preflight", 7, moved.data, moved.step_started_at)
        events = s.scalars(select(EventRow).where(EventRow.node_id == row.id).order_by(EventRow.id)).all()
        assert [(e.kind, e.message, e.ts) for e in events[-2:]] == [
            ("capture", "a step's note", moved.step_started_at), ("transition", "ready -> preflight", moved.step_started_at)]
        row.step_started_at = datetime(2026, 11, 23, 9, 0, 0)  # no microseconds: a format corner
        s.commit()
    assert store.node_state("rhvnode3").step_started_at == datetime(2026, 11, 23, 9, 0, 0)
    build, _ = store.arm("rhvnode3", svc.key, 600)
    assert store.active_build("rhvnode3") == build and store.build_by_digest("nope") is None
    assert store.set_boot_local(build.id) and not store.set_boot_local(build.id)
    store.end_build("rhvnode3", "done")
    assert store.active_build("rhvnode3") is None
    with store._session() as s:
        b = s.get(BuildRow, build.id)
        assert (b.created_at, b.expires_at, b.end_reason) == (build.created_at, build.expires_at, "done")
        assert b.boot_local_at is not None and b.ended_at is not None


def test_run_leases_are_judged_on_the_databases_clock_not_a_skewed_serves(svc, monkeypatch):
    """Two `serve` processes on two hosts, one of whose clocks is an hour fast: the fast one must not
    take a run whose holder renewed its 60 s lease a moment ago, nor hand itself a lease that the other
    would see as an hour long. Leases were computed from each process's own wall clock."""
    from datetime import timedelta

    from provision.store import clock, runs

    run = svc.store.create_rebuild(["rhvnode3"], {}, runner="service")
    assert svc.store.claim_rebuild("a", 60).id == run.id
    real = clock.utcnow
    monkeypatch.setattr(runs, "utcnow", lambda: real() + timedelta(hours=1))  # serve b's clock
    monkeypatch.setattr(clock, "utcnow", lambda: real() + timedelta(hours=1))
    assert svc.store.claim_rebuild("b", 60) is None, "a fast clock took a run under a live lease"
    assert svc.store.renew_lease(run.id, "a", 60) == "run"
    held = svc.store.rebuild(run.id).lease_until
    assert abs((held - real()).total_seconds() - 60) < 30, f"lease until {held}: not 60 s on the database's clock"
