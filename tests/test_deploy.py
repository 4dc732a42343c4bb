"""Running provision as an operator would outside its checkout: --version, --state-dir,
`node remove`, `db backup` and `db restore`."""

from __future__ import annotations

import json
import sqlite3

from provision import config as config_mod
from provision import services

from .conftest import REPO, run_cli, write_config

INVENTORY = str(REPO / "examples/inventory.yaml")


def _names(cfg) -> list[str]:
    out = run_cli("node", "list", "--json", config=cfg)
    assert out.returncode == 0, out.stderr
    return [n["name"] for n in json.loads(out.stdout)]


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("provision, version 0.")


def test_state_dir_puts_database_secrets_and_media_under_it(tmp_path):
    state = tmp_path / "state"
    out = run_cli("--state-dir", str(state), "node", "import", INVENTORY)
    assert out.returncode == 0, out.stderr
    assert (state / "provision.db").is_file() and (state / "secret.key").is_file()
    cfg = config_mod.load(None, state)
    assert cfg.server.admin_token_file == state / "admin.token" and cfg.paths.media == state / "media"
    assert run_cli("--state-dir", str(tmp_path / "other"), "node", "list").returncode == 2  # not made


def test_node_remove_refused_while_a_rebuild_has_it_then_removes_everything_of_it(tmp_path):
    cfg = write_config(tmp_path)
    assert run_cli("node", "import", INVENTORY, config=cfg).returncode == 0
    svc = services.build(config_mod.load(cfg), bootcheck=False)
    try:
        svc.store.arm("rhvnode3", svc.key, 600)
        run = svc.store.create_rebuild(["rhvnode4"], {}, runner="service")
        svc.store.set_state("rhvnode5", "installing")
    finally:
        svc.close()
    for name, why in (("rhvnode3", "armed to install"), ("rhvnode4", f"in rebuild {run.id}"),
                      ("rhvnode5", "installing, part-way through a rebuild")):
        out = run_cli("node", "remove", name, "--yes", config=cfg)
        assert out.returncode == 2 and why in out.stderr, out.stderr
    assert _names(cfg) == ["rhvnode3", "rhvnode4", "rhvnode5"]
    assert run_cli("node", "remove", "rhvnode3", config=cfg).returncode == 2  # no --yes, no terminal
    assert run_cli("node", "remove", "ghost", "--yes", config=cfg).returncode == 2
    svc = services.build(config_mod.load(cfg), bootcheck=False)
    try:
        svc.store.end_build("rhvnode3", "test")
    finally:
        svc.close()
    out = run_cli("node", "remove", "rhvnode3", "--yes", config=cfg)
    assert out.returncode == 0 and out.stdout.strip() == "removed node rhvnode3"
    assert _names(cfg) == ["rhvnode4", "rhvnode5"]
    with sqlite3.connect(tmp_path / "provision.db") as conn:
        for table in ("facts_snapshots", "builds", "events", "logs", "collections", "addresses"):
            left = conn.execute(f"SELECT count(*) FROM {table} WHERE node_id NOT IN (SELECT id FROM nodes)").fetchone()
            assert left == (0,), table
    assert run_cli("node", "import", INVENTORY, config=cfg).returncode == 0  # and it can come back
    assert _names(cfg) == ["rhvnode3", "rhvnode4", "rhvnode5"]


def test_db_backup_and_restore_keep_the_replaced_database(tmp_path):
    cfg = write_config(tmp_path)
    assert run_cli("node", "import", INVENTORY, config=cfg).returncode == 0
    backup = tmp_path / "backup.db"
    out = run_cli("db", "backup", str(backup), config=cfg)
    assert out.returncode == 0 and backup.is_file(), out.stderr
    again = run_cli("db", "backup", str(backup), config=cfg)
    assert again.returncode == 2 and "exists" in again.stderr
    assert run_cli("node", "remove", "rhvnode5", "--yes", config=cfg).returncode == 0
    assert _names(cfg) == ["rhvnode3", "rhvnode4"]
    bogus = tmp_path / "bogus.db"
    bogus.write_text("not a database")
    refused = run_cli("db", "restore", str(bogus), "--yes", config=cfg)
    assert refused.returncode == 2 and "not a SQLite database" in refused.stderr
    out = run_cli("db", "restore", str(backup), "--yes", config=cfg)
    assert out.returncode == 0, out.stderr
    assert _names(cfg) == ["rhvnode3", "rhvnode4", "rhvnode5"]
    kept = list(tmp_path.glob("provision.db.before-restore-*"))
    assert len(kept) == 1
    with sqlite3.connect(kept[0]) as conn:  # the database it replaced: rhvnode5 removed
        assert [r[0] for r in conn.execute("SELECT name FROM nodes ORDER BY name")] == ["rhvnode3", "rhvnode4"]


def test_db_restore_is_refused_while_a_run_has_not_ended(tmp_path):
    cfg = write_config(tmp_path)
    assert run_cli("node", "import", INVENTORY, config=cfg).returncode == 0
    backup = tmp_path / "b.db"
    assert run_cli("db", "backup", str(backup), config=cfg).returncode == 0
    svc = services.build(config_mod.load(cfg), bootcheck=False)
    try:
        run = svc.store.create_rebuild(["rhvnode4"], {}, runner="service")
    finally:
        svc.close()
    out = run_cli("db", "restore", str(backup), "--yes", config=cfg)
    assert out.returncode == 2 and f"rebuild {run.id} has not ended" in out.stderr


def test_db_backup_of_postgresql_points_at_pg_dump(tmp_path):
    cfg = write_config(tmp_path, server_extra="")
    text = cfg.read_text().replace(f'db_url = "sqlite:///{tmp_path}/provision.db"',
                                   'db_url = "postgresql+psycopg://p@127.0.0.1:1/x"')
    cfg.write_text(text)
    out = run_cli("db", "backup", str(tmp_path / "x"), config=cfg)
    assert out.returncode == 2 and "pg_dump" in out.stderr


def test_the_system_config_is_read_when_no_other_is_named(tmp_path, monkeypatch):
    system = tmp_path / "etc-provision.toml"
    system.write_text('[server]\nthreads = 3\n[paths]\nstate_dir = "/srv/provision"\n')
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG", system)
    monkeypatch.delenv("PROVISION_CONFIG", raising=False)
    cfg = config_mod.load()
    assert cfg.source == str(system) and cfg.server.threads == 3
    assert cfg.server.db_url == "sqlite:////srv/provision/provision.db"
    other = write_config(tmp_path)
    assert config_mod.load(other).source == str(other)  # --config wins
    monkeypatch.setenv("PROVISION_CONFIG", str(other))
    assert config_mod.load().source == str(other)  # and PROVISION_CONFIG
    system.unlink()
    monkeypatch.delenv("PROVISION_CONFIG")
    assert config_mod.load().source == "embedded defaults"
