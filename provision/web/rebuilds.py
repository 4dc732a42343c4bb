"""Rebuild runs in the service (admin API): submit, list, show, abort, pause, continue. The
conductor in `serve` runs them (workflow/conductor.py); these views only parse, call and render."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..workflow import submit
from .auth import api_auth
from .deps import services

bp = Blueprint("rebuilds", __name__, url_prefix="/api/v1")


def run_json(run, store, nodes: bool = True) -> dict:
    body = {"id": run.id, "created_at": run.created_at.isoformat(), "status": run.status, "control": run.control,
            "runner": run.runner, "owner": run.owner,
            "lease_until": run.lease_until.isoformat() if run.lease_until else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "options": run.options, "summary": run.summary, "node_count": len(run.nodes),
            "counts": {k: len(v) for k, v in submit.tally(store, run).items()},
            "runner_gone": store.runner_gone(run)}
    if nodes:
        body["nodes"] = []
        for n in run.nodes:
            st = store.node_state(n)
            body["nodes"].append({"name": n, "cluster": st.cluster, "state": st.state,
                                  "in_this_run": st.rebuild_id == run.id, "failed_step": st.failed_step,
                                  "reason": st.fail_reason,
                                  "since": st.step_started_at.isoformat() if st.step_started_at else None})
    return body


def wake_conductor() -> None:
    """A run was submitted or continued: this process's conductor looks now, not at its next tick."""
    conductor = services().conductor
    if conductor is not None:
        conductor.wake()


@bp.post("/rebuilds")
@api_auth(role="operator")
def create():
    req = submit.RebuildRequest.parse(request.get_json(silent=True))
    store = services().store
    selected = submit.select(store, req.nodes, req.cluster)
    submit.check_rebuildable(store, selected, False, req.accept_foreign_vg, retry=req.retry)
    canary = submit.default_canary(req.canary, selected)
    selected = submit.ordered(store, services().cfg.defaults.batch_order, selected, canary)
    if req.dry_run:
        return jsonify(dry_run=True, **submit.plan(store, selected, req.max_parallel, req.min_up, canary,
                                                   ctx=services()))
    options = {"max_parallel": req.max_parallel, "min_up": req.min_up, "canary": canary,
               "accept_drift": req.accept_drift, "allow_gluster": req.allow_gluster, "retry": req.retry}
    run = store.create_rebuild(selected, options, runner="service")
    wake_conductor()
    return jsonify(run_json(run, store)), 202, {"Location": f"/api/v1/rebuilds/{run.id}"}


@bp.get("/rebuilds")
@api_auth
def index():
    store = services().store
    return jsonify(rebuilds=[run_json(r, store, nodes=False) for r in reversed(store.rebuilds())])


@bp.get("/rebuilds/<int:run_id>")
@api_auth
def show(run_id: int):
    store = services().store
    return jsonify(run_json(store.rebuild(run_id), store))


def _control(run_id: int, action: str):
    store = services().store
    run = store.control_rebuild(run_id, action)
    wake_conductor()
    return jsonify(run_json(run, store)), 202


@bp.post("/rebuilds/<int:run_id>/abort")
@api_auth(role="operator")
def abort(run_id: int):
    return _control(run_id, "abort")


@bp.post("/rebuilds/<int:run_id>/pause")
@api_auth(role="operator")
def pause(run_id: int):
    return _control(run_id, "pause")


@bp.post("/rebuilds/<int:run_id>/continue")
@api_auth(role="operator")
def resume(run_id: int):
    return _control(run_id, "continue")
