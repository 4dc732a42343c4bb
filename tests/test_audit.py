"""The audit trail: every operator action through the API, the console and the CLI, with who, when,
from where, what, on what and how it ended; shown by `provision audit`, the console's audit page,
a node's page and a run's page; never a secret."""

from __future__ import annotations

import json
import re

import pytest

from provision.web import create_app

from .conftest import EXAMPLE, run_cli, write_config
from .workflow_helpers import NAMES, build_wf

TOKEN = "t" * 32


@pytest.fixture
def wf(tmp_path):
    svc = build_wf(tmp_path)
    yield svc
    svc.close()


def _client(wf):
    return create_app(wf, admin_token=TOKEN, secret_key="k" * 32).test_client()


AUTH = {"Authorization": "Bearer " + TOKEN}


def test_api_actions_are_recorded_with_who_where_what_and_outcome(wf):
    client = _client(wf)
    env = {"REMOTE_ADDR": "192.0.2.7"}
    r = client.post("/api/v1/rebuilds", json={"nodes": NAMES, "max_parallel": 2}, headers=AUTH, environ_base=env)
    run_id = r.json["id"]
    client.post(f"/api/v1/rebuilds/{run_id}/pause", headers=AUTH, environ_base=env)
    refused = client.post("/api/v1/rebuilds", json={"nodes": ["rhvnode4"]}, headers=AUTH, environ_base=env)
    assert refused.status_code == 400
    client.post(f"/api/v1/rebuilds/{run_id}/abort", headers=AUTH, environ_base=env)
    client.post("/api/v1/rebuilds", json={"nodes": NAMES, "dry_run": True}, headers=AUTH)  # a plan: not recorded
    client.post("/api/v1/rebuilds", json={"nodes": NAMES})  # no token: no one's action
    rows = list(reversed(wf.store.audit()))
    assert [(a.actor, a.source, a.action, a.target, a.outcome) for a in rows] == [
        ("admin (break-glass token)", "192.0.2.7", "rebuild.submit", f"rebuild {run_id}", "ok"),
        ("admin (break-glass token)", "192.0.2.7", "rebuild.pause", f"rebuild {run_id}", "ok"),
        ("admin (break-glass token)", "192.0.2.7", "rebuild.submit", "rebuild", "refused"),
        ("admin (break-glass token)", "192.0.2.7", "rebuild.abort", f"rebuild {run_id}", "ok"),
    ]
    assert rows[0].detail == "[rhvnode3] [rhvnode4] [rhvnode5]"
    assert "node rhvnode4" in rows[2].detail and "[rhvnode4]" in rows[2].detail  # why it was refused
    assert [a.action for a in wf.store.audit(target="rhvnode4")][-1] == "rebuild.submit"  # per node
    assert [a.action for a in wf.store.audit(target=f"rebuild {run_id}")] == ["rebuild.abort", "rebuild.pause",
                                                                             "rebuild.submit"]


def test_console_logins_good_and_bad_and_its_actions_are_recorded_and_shown(wf):
    client = _client(wf)

    def csrf(path="/login"):
        return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)
    bad = client.post("/login", data={"token": "wrong" * 8, "csrf_token": csrf()}, environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert bad.status_code == 401
    good = client.post("/login", data={"token": TOKEN, "csrf_token": csrf()})
    assert good.status_code == 302
    token = csrf("/")
    start = client.post("/rebuild/start", data={"nodes": ["rhvnode3"], "typed": "rhvnode3", "max_parallel": "1",
                                                 "csrf_token": token})
    assert start.status_code == 302
    run_id = int(start.headers["Location"].rsplit("/", 1)[1])
    client.post(f"/runs/{run_id}/pause", data={"csrf_token": token})
    rows = list(reversed(wf.store.audit()))
    assert [(a.actor, a.action, a.target, a.outcome) for a in rows] == [
        ("anonymous (not logged in)", "login", "console", "refused"),
        ("admin (break-glass token)", "login", "console", "ok"),
        ("admin (break-glass token)", "rebuild.submit", f"rebuild {run_id}", "ok"),
        ("admin (break-glass token)", "rebuild.pause", f"rebuild {run_id}", "ok"),
    ]
    assert rows[0].source == "198.51.100.9"
    page = client.get("/audit").text
    assert "rebuild.pause" in page and "198.51.100.9" in page
    assert "rebuild.submit" in client.get("/nodes/rhvnode3").text  # the node's page
    assert "rebuild.pause" in client.get(f"/runs/{run_id}").text  # the run's page
    client.post("/logout", data={"csrf_token": token})
    assert wf.store.audit(limit=1)[0].action == "logout"
    for a in wf.store.audit():  # no secret in any row
        assert TOKEN not in f"{a.actor} {a.detail}" and "wrongwrong" not in a.detail


def test_cli_actions_are_recorded_and_provision_audit_lists_them(tmp_path):
    cfg = write_config(tmp_path)
    assert run_cli("node", "import", str(EXAMPLE), config=cfg).returncode == 0
    assert run_cli("facts", "prune", "rhvnode3", "--keep", "1", config=cfg).returncode == 0
    refused = run_cli("node", "remove", "rhvnode3", config=cfg)  # no --yes, no terminal
    assert refused.returncode == 2
    assert run_cli("node", "remove", "rhvnode5", "--yes", config=cfg).returncode == 0
    out = run_cli("audit", "--json", config=cfg)
    rows = list(reversed(json.loads(out.stdout)))
    import getpass
    me = f"cli:{getpass.getuser()}"
    assert [(r["actor"], r["action"], r["target"], r["outcome"]) for r in rows] == [
        (me, "node.import", "inventory", "ok"),
        (me, "facts.prune", "rhvnode3", "ok"),
        (me, "node.remove", "rhvnode5", "ok"),
    ]
    assert rows[0]["detail"] == "[rhvnode3] [rhvnode4] [rhvnode5]" and rows[0]["source"].startswith("cli@")
    node = run_cli("audit", "--node", "rhvnode3", "--json", config=cfg)
    assert [r["action"] for r in json.loads(node.stdout)] == ["facts.prune", "node.import"]
    table = run_cli("audit", config=cfg).stdout
    assert table.splitlines()[0].split()[:4] == ["TIME", "ACTOR", "SOURCE", "ACTION"]
    assert run_cli("audit", "--node", "ghost", config=cfg).returncode == 2
