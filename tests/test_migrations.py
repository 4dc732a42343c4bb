"""Schema migrations (Alembic, provision/store/migrations): a database made by the first release
(its tables as they were, tests/data/models_first_release.py, from git history at 1eb8930) is
refused until `provision db upgrade`, which brings it to the newest schema with every node,
snapshot, event, build, log and run intact; on SQLite and PostgreSQL. A database made later
without migrations (no version recorded) upgrades the same way; a new one is created at the newest."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from provision.store import Store
from provision.store import schema as schema_mod
from provision.store.models import Base

from .conftest import REPO, run_cli, use_db, write_config

T0 = datetime(2026, 11, 22, 12, 0, 0)


def _example():
    """rhvnode3 of the example inventory: its BMC and facts as JSON."""
    from provision.domain import load_yaml, parse_nodes
    from provision.store.tables import facts_json
    node = next(n for n in parse_nodes(load_yaml((REPO / "examples/inventory.yaml").read_text(), "inv"))
                if n.name == "rhvnode3")
    return node.bmc.model_dump(mode="json"), facts_json(node.facts)


def _first_release():
    spec = importlib.util.spec_from_file_location("models_first_release", REPO / "tests/data/models_first_release.py")
    module = importlib.util.module_from_spec(spec)
    import sys
    sys.modules["models_first_release"] = module  # SQLAlchemy resolves the annotations through it
    spec.loader.exec_module(module)
    return module


def _old_database(url: str) -> None:
    """The first release's tables, with what a site would have stored in them."""
    engine = sa.create_engine(url)
    _first_release().Base.metadata.create_all(engine)
    bmc, facts = _example()
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO nodes (id, name, fqdn, cluster, profile, bmc, state, data, created_at, "
                          "updated_at) VALUES (1, 'rhvnode3', 'rhvnode3.lab.example.com', 'ocpcluster', 'rhvh', "
                          ":bmc, 'done', '{}', :t, :t)"), {"bmc": json.dumps(bmc), "t": T0})
        c.execute(sa.text("INSERT INTO facts_snapshots (id, node_id, created_at, source, digest, data) VALUES "
                          "(1, 1, :t, 'engine', 'd1', :f)"), {"t": T0, "f": facts})
        c.execute(sa.text("INSERT INTO events (node_id, ts, kind, message) VALUES (1, :t, 'transition', "
                          "'register -> done (ok)')"), {"t": T0})
        c.execute(sa.text("INSERT INTO builds (node_id, nonce, token_digest, snapshot_id, created_at, expires_at, "
                          "ended_at, end_reason) VALUES (1, 'n', 'td', 1, :t, :t, :t, 'done')"), {"t": T0})
        c.execute(sa.text("INSERT INTO logs (node_id, ts, kind, text) VALUES (1, :t, 'install', 'anaconda ok')"),
                  {"t": T0})
        c.execute(sa.text("INSERT INTO rebuilds (id, created_at, nodes, options, status) VALUES "
                          "(1, :t, '[\"rhvnode3\"]', '{\"max_parallel\": 2}', 'done')"), {"t": T0})
    engine.dispose()


def _schema_diff(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)]
    finally:
        engine.dispose()


def _check_intact(url: str) -> None:
    store = Store(url, create=False)
    try:
        rec = store.get("rhvnode3")
        assert rec.state == "done" and rec.node.cluster == "ocpcluster" and rec.snapshot_id == 1
        assert [e.message for e in store.events("rhvnode3")] == ["register -> done (ok)"]
        assert [t for _, _, t in store.logs("rhvnode3")] == ["anaconda ok"]
        run = store.rebuild(1)
        assert run.nodes == ["rhvnode3"] and run.options == {"max_parallel": 2} and run.status == "done"
        assert run.runner == "cli" and run.control == "run"  # the columns added since, at their defaults
        assert store.node_state("rhvnode3").last_rebuild_seconds is None
        store.arm("rhvnode3", "k" * 32, 600)  # and it works as a database of this release
        assert store.active_build("rhvnode3") is not None
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_db(request, tmp_path):
    url = f"sqlite:///{tmp_path}/old.db" if request.param == "sqlite" else request.getfixturevalue("pg").new_database()
    _old_database(url)
    return url


def test_a_first_release_database_is_refused_until_db_upgrade_then_has_everything(old_db, tmp_path):
    cfg = use_db(write_config(tmp_path), old_db)
    for args in (["node", "list"], ["serve"]):
        refused = run_cli(*args, config=cfg)
        assert refused.returncode == 2 and "run `provision db upgrade`" in refused.stderr, refused.stderr
        assert "schema is revision 0001" in refused.stderr
    assert run_cli("db", "version", config=cfg).stdout.strip() == f"database 0001; this provision needs {schema_mod.head()}"
    up = run_cli("db", "upgrade", config=cfg)
    assert up.returncode == 0 and up.stdout.strip() == f"schema at {schema_mod.head()} (was 0001)", up.stderr
    assert _schema_diff(old_db) == []  # exactly the schema a new database gets
    _check_intact(old_db)
    again = run_cli("db", "upgrade", config=cfg)
    assert again.returncode == 0 and "already" in again.stdout
    listed = run_cli("node", "list", "--json", config=cfg)
    assert listed.returncode == 0 and [n["name"] for n in json.loads(listed.stdout)] == ["rhvnode3"]


def test_a_database_made_later_without_migrations_upgrades_from_where_it_is(tmp_path):
    """A release between the first and migrations: create_all's tables and its hand-made ALTERs,
    no version table; it lacks what came with migrations (0003 on)."""
    url = f"sqlite:///{tmp_path}/mid.db"
    Store(url).close()
    with sqlite3.connect(tmp_path / "mid.db") as conn:
        conn.execute("DROP TABLE alembic_version")
        for stmt in ("ALTER TABLE nodes DROP COLUMN last_rebuild_seconds",  # what came with migrations 0003..
                     "ALTER TABLE nodes DROP COLUMN rebuild_started_at", "DROP TABLE audit", "DROP TABLE api_tokens",
                     "ALTER TABLE ui_sessions DROP COLUMN user", "ALTER TABLE ui_sessions DROP COLUMN role",
                     "ALTER TABLE nodes DROP COLUMN power_state", "ALTER TABLE nodes DROP COLUMN power_seen_at"):
            conn.execute(stmt)
    with pytest.raises(schema_mod.OldSchema, match="revision 0001"):
        Store(url)
    assert schema_mod.upgrade(Store(url, check=False).engine) == ("0001", schema_mod.head())
    assert _schema_diff(url) == []


def test_a_new_database_is_created_at_the_newest_schema(tmp_path, pg):
    for url in (f"sqlite:///{tmp_path}/new.db", pg.new_database()):
        Store(url).close()
        assert _schema_diff(url) == []
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert schema_mod.revision(conn) == schema_mod.head()
        engine.dispose()


def test_the_migrations_end_where_the_models_are():
    """Every change to the models comes with a migration: the chain from an empty database gives
    the models' schema exactly."""
    url = "sqlite://"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        from alembic import command
        command.upgrade(schema_mod._alembic(conn), "head")
        assert [d for d in compare_metadata(MigrationContext.configure(conn), Base.metadata)] == []
    engine.dispose()


def test_a_missing_database_is_not_created_by_a_command_that_reads(tmp_path):
    cfg = write_config(tmp_path)
    out = run_cli("node", "list", config=cfg)
    assert out.returncode == 2 and f"no provision database at {tmp_path}/provision.db" in out.stderr
    assert str(cfg) in out.stderr and not (tmp_path / "provision.db").exists()
    assert run_cli("node", "import", str(REPO / "examples/inventory.yaml"), config=cfg).returncode == 0
    assert run_cli("node", "list", config=cfg).returncode == 0


def test_node_list_from_another_directory_does_not_make_a_new_empty_state(tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "provision", "node", "list"], cwd=other, capture_output=True,
                         text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert out.returncode == 2 and "no provision database at" in out.stderr and "embedded defaults" in out.stderr
    assert list(other.iterdir()) == []  # no ./var made
    out = subprocess.run([sys.executable, "-m", "provision", "--config", "/dev/null", "node", "list"], cwd=other,
                         capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert out.returncode == 2 and "config /dev/null: not a regular file" in out.stderr
    assert not Path("/dev/var").exists()
