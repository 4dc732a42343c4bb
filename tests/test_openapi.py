"""/api/v1/openapi.json: a valid OpenAPI 3.1 document (openapi-spec-validator), whose paths and
methods are exactly the application's /api/v1 routes, and whose schemas the real responses of a
running `provision serve` validate against."""

from __future__ import annotations

import re

import jsonschema
from openapi_spec_validator import validate

from provision import config as config_mod
from provision import services
from provision.domain import load_yaml, parse_nodes
from provision.web import create_app

from .conftest import EXAMPLE, write_config


def _routes(tmp_path) -> set[tuple[str, str]]:
    tmp_path.mkdir()
    svc = services.build(config_mod.load(write_config(tmp_path)))
    try:
        app = create_app(svc, admin_token="t" * 20, secret_key="k" * 32)
    finally:
        svc.close()
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
            out |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def test_the_document_is_valid_and_matches_the_routes(server, tmp_path):
    doc = server.get("/api/v1/openapi.json").json()  # served without a token: it holds no secret
    validate(doc)
    assert doc["openapi"].startswith("3.1") and doc["info"]["version"] != "{version}"
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == _routes(tmp_path / "app")
    assert {"Bmc", "Facts", "Nic", "Bond"} <= set(doc["components"]["schemas"])  # from the pydantic models


def _validator(doc: dict, name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


def test_real_responses_validate_against_the_document(server):
    doc = server.get("/api/v1/openapi.json").json()
    imported = server.api("/nodes", "POST", data=EXAMPLE.read_text())
    assert imported.status_code == 200, imported.text
    _validator(doc, "ImportResult").validate(imported.json())
    name = parse_nodes(load_yaml(EXAMPLE.read_text(), "x"))[0].name
    for summary in server.api("/nodes").json()["nodes"]:
        _validator(doc, "NodeSummary").validate(summary)
    _validator(doc, "Node").validate(server.api(f"/nodes/{name}").json())
    facts = server.api(f"/nodes/{name}/facts").json()
    _validator(doc, "Snapshot").validate(facts)
    _validator(doc, "Facts").validate(facts["facts"])
    for snap in server.api(f"/nodes/{name}/snapshots").json()["snapshots"]:
        _validator(doc, "Snapshot").validate(snap)
    for path in ("/nodes/ghost", "/nodes/ghost/facts"):
        missing = server.api(path)
        assert missing.status_code == 404 and "404" in doc["paths"][re.sub(r"ghost", "{name}", path)]["get"]["responses"]
        _validator(doc, "Error").validate(missing.json())
    unauthorized = server.api("/nodes", headers={"Authorization": "Bearer wrong"})
    assert unauthorized.status_code == 401
    _validator(doc, "Error").validate(unauthorized.json())
    bad = server.api("/nodes", "POST", data="nodes: [{name: 1}]")
    assert bad.status_code == 400 and "400" in doc["paths"]["/nodes"]["post"]["responses"]
    _validator(doc, "Error").validate(bad.json())


def _schema_of(doc: dict, path: str, method: str, status: str) -> jsonschema.Draft202012Validator:
    schema = doc["paths"][path][method]["responses"][status]
    if "$ref" in schema:
        schema = doc["components"]["responses"][schema["$ref"].rsplit("/", 1)[1]]
    return jsonschema.Draft202012Validator(schema["content"]["application/json"]["schema"] | {"components": doc["components"]})


def test_the_rebuild_endpoints_answer_as_documented(server):
    doc = server.get("/api/v1/openapi.json").json()
    assert server.api("/nodes", "POST", data=EXAMPLE.read_text()).status_code == 200
    name = parse_nodes(load_yaml(EXAMPLE.read_text(), "x"))[0].name
    plan = server.api("/rebuilds", "POST", json={"nodes": [name], "dry_run": True})
    assert plan.status_code == 200, plan.text
    _schema_of(doc, "/rebuilds", "post", "200").validate(plan.json())
    bad = server.api("/rebuilds", "POST", json={"nodes": [name], "max_parallel": 0})
    assert bad.status_code == 400 and "max_parallel" in bad.json()["error"]
    _schema_of(doc, "/rebuilds", "post", "400").validate(bad.json())
    run = server.api("/rebuilds", "POST", json={"nodes": [name]})
    assert run.status_code == 202, run.text
    _schema_of(doc, "/rebuilds", "post", "202").validate(run.json())
    run_id = run.json()["id"]
    _schema_of(doc, "/rebuilds/{run_id}", "get", "200").validate(server.api(f"/rebuilds/{run_id}").json())
    _schema_of(doc, "/rebuilds", "get", "200").validate(server.api("/rebuilds").json())
    # the serve's conductor may have taken it (and ended it) already: either answer is documented
    ctl = server.api(f"/rebuilds/{run_id}/abort", "POST")
    assert ctl.status_code in (202, 409), ctl.text
    _schema_of(doc, "/rebuilds/{run_id}/abort", "post", str(ctl.status_code)).validate(ctl.json())
    missing = server.api("/rebuilds/999/pause", "POST")
    assert missing.status_code == 404
    _schema_of(doc, "/rebuilds/{run_id}/pause", "post", "404").validate(missing.json())

