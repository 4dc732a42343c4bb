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
