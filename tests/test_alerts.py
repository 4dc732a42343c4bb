"""docs/prometheus: the alert rules pass `promtool check rules` and their own `promtool test rules`,
the Grafana dashboard matches Grafana's dashboard model (a JSON schema) and its queries parse, and
every metric either names is one provision's /metrics exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from prometheus_client import generate_latest

from provision.workflow.machine import advance

from .workflow_helpers import NAMES, build_wf

DOCS = Path(__file__).parent.parent / "docs" / "prometheus"
RULES, RULES_TEST, DASHBOARD = DOCS / "provision-alerts.yml", DOCS / "provision-alerts-test.yml", DOCS / "provision-dashboard.json"
PROMTOOL = shutil.which("promtool")  # Debian's prometheus package: make test installs it


@pytest.fixture
def wf(tmp_path):
    svc = build_wf(tmp_path)
    yield svc
    svc.close()


def promtool(*args: str, cwd: Path = DOCS) -> subprocess.CompletedProcess:
    assert PROMTOOL is not None, "promtool is not installed (make system-deps installs Debian's prometheus)"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_alert_rules_pass_promtool_and_fire_as_their_tests_say():
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0 and "SUCCESS: 6 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULES_TEST.name)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_promtool_would_catch_a_broken_rule(tmp_path):
    """The check above can fail: a rule with a bad expression is refused."""
    bad = yaml.safe_load(RULES.read_text())
    bad["groups"][0]["rules"][0]["expr"] = "provision_node_step_seconds > on(step"
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(bad))
    assert promtool("check", "rules", "bad.yml", cwd=tmp_path).returncode != 0


def _exprs() -> list[str]:
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return rules + [t["expr"] for p in panels for t in p["targets"]]


def test_the_dashboard_is_a_grafana_dashboard_whose_queries_parse(tmp_path):
    dash = json.loads(DASHBOARD.read_text())
    schema = json.loads((Path(__file__).parent / "data" / "grafana-dashboard.schema.json").read_text())
    jsonschema.validate(dash, schema)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:  # on the 24-column grid
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
    broken = json.loads(DASHBOARD.read_text())
    del broken["panels"][0]["gridPos"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    # every panel query is valid PromQL: promtool parses them as recording rules ($cluster: any)
    queries = [t["expr"].replace("$cluster", ".*") for p in dash["panels"] for t in p["targets"]]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": q}
                                                        for i, q in enumerate(queries)]}]}
    (tmp_path / "dashboard-queries.yml").write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", "dashboard-queries.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_metric_the_rules_and_dashboard_name_is_exported(wf):
    """A rebuilt node, a failed one and one in a step: /metrics has every series the docs use."""
    for name in NAMES[:3]:
        advance(wf.store, name, "start")
    advance(wf.store, NAMES[0], "ok")
    advance(wf.store, NAMES[1], "fail", reason="engine refused")
    text = generate_latest(wf.metrics.registry).decode()
    exported = set(re.findall(r"^(provision_[a-z_]+)", text, re.M))  # series with samples
    for name, kind in re.findall(r"^# TYPE (provision_[a-z_]+) (\w+)", text, re.M):  # and every family declared
        exported |= {name} | ({f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else set())
    used = {m for e in _exprs() for m in re.findall(r"\bprovision_[a-z_]+", e)}
    assert used and used <= exported, used - exported
    assert f'provision_node_failed{{cluster="ocpcluster",node="{NAMES[1]}",step="preflight"}} 1.0' in text
    assert re.search(rf'provision_node_step_seconds{{cluster="ocpcluster",node="{NAMES[0]}",step="capture"}} ', text)
    assert 'provision_step_duration_seconds_count{step="preflight"} 1.0' in text
    assert 'provision_nodes{cluster="ocpcluster",state="failed"} 1.0' in text
