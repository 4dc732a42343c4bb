"""Admin JSON API under /api/v1 (bearer token). Views parse, call, render: no logic."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..domain import load_yaml, parse_nodes
from ..errors import InputError
from ..render import check_kickstart
from .auth import api_auth
from .deps import services

bp = Blueprint("api", __name__, url_prefix="/api/v1")
EVENTS_SHOWN = 200  # a node's newest events in its view (API: ?events=N)


def node_summary(rec, armed: bool) -> dict:
    n = rec.node
    return {"name": n.name, "fqdn": n.fqdn, "cluster": n.cluster, "profile": n.profile, "state": rec.state,
            "snapshot_id": rec.snapshot_id, "armed": armed}


@bp.get("/nodes")
@api_auth
def nodes():
    store = services().store
    recs = store.list_nodes(request.args.get("cluster"))
    return jsonify(nodes=[node_summary(r, store.active_build(r.node.name) is not None) for r in recs])


@bp.post("/nodes")
@api_auth(role="admin")
def import_nodes():
    data = load_yaml(request.get_data(as_text=True), "request body")
    result = services().store.import_nodes(parse_nodes(data, "request body"))
    return jsonify(created=result.created, updated=result.updated, snapshots=result.snapshots)


@bp.get("/nodes/<name>")
@api_auth
def node(name: str):
    store = services().store
    rec = store.get(name)
    body = node_summary(rec, store.active_build(name) is not None)
    body["bmc"] = rec.node.bmc.model_dump(mode="json")
    limit = request.args.get("events", default=EVENTS_SHOWN, type=int)
    if limit is None or not 0 <= limit <= 100_000:
        raise InputError("events: a number of events, 0..100000")
    body["events"] = [{"ts": e.ts.isoformat(), "kind": e.kind, "message": e.message}
                      for e in store.events(name, limit=limit)]  # the newest, oldest first
    body["events_total"] = store.event_count(name)
    return jsonify(body)


@bp.get("/nodes/<name>/facts")
@api_auth
def facts(name: str):
    snap = services().store.snapshot(name, request.args.get("snapshot", type=int))
    return jsonify(id=snap.id, created_at=snap.created_at.isoformat(), source=snap.source,
                   facts=snap.facts.model_dump(mode="json"))


@bp.get("/nodes/<name>/snapshots")
@api_auth
def snapshots(name: str):
    return jsonify(snapshots=[{"id": s.id, "created_at": s.created_at.isoformat(), "source": s.source}
                              for s in services().store.snapshots(name)])


@bp.get("/nodes/<name>/render/<kind>")
@api_auth
def render(name: str, kind: str):
    install = True if request.args.get("install") in ("1", "true") else None
    rendered = services().renderer.render(name, kind, install=install, show_secrets=False,
                                      snapshot_id=request.args.get("snapshot", type=int))
    if request.args.get("check") in ("1", "true"):
        problems = check_kickstart(rendered.text) if kind == "kickstart" else []
        return jsonify(node=name, kind=kind, armed=rendered.armed, snapshot_id=rendered.snapshot_id,
                       text=rendered.text, problems=problems), (200 if not problems else 422)
    return Response(rendered.text, mimetype="text/plain")
