"""What a rebuild request is, whoever makes it (`provision rebuild`, `POST /api/v1/rebuilds`):
the nodes it names, the refusals before anything is touched, its options and its plan."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import InputError
from ..render.checks import foreign_vgs
from . import states as S
from .steps import plan_lines


class RebuildRequest(BaseModel):
    """The body of POST /api/v1/rebuilds: the CLI's arguments and options, by the same names."""

    model_config = ConfigDict(extra="forbid")
    nodes: list[str] = Field(default_factory=list, max_length=5000)
    cluster: str | None = None
    max_parallel: int = Field(default=1, ge=1, le=500)
    min_up: int | None = Field(default=None, ge=0)
    canary: int | None = Field(default=None, ge=0)
    accept_drift: bool = False
    allow_gluster: bool = False
    accept_foreign_vg: bool = False
    # take failed nodes back at the step that failed, and nodes left part-way by a run that ended
    retry: bool = False
    dry_run: bool = False

    @model_validator(mode="after")
    def _one_selection(self):
        if self.nodes and self.cluster:
            raise ValueError("give nodes or cluster, not both")
        if not self.nodes and not self.cluster:
            raise ValueError("name the nodes to rebuild, or give cluster")
        return self

    @classmethod
    def parse(cls, body) -> RebuildRequest:
        if not isinstance(body, dict):
            raise InputError("request body: a JSON object is expected")
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "request body"
            raise InputError(f"{field}: {err['msg']}") from None


def select(store, names, cluster: str | None, resume: bool = False) -> list[str]:
    if names and cluster:
        raise InputError("give node names or --cluster, not both")
    if cluster:
        selected = [r.node.name for r in store.list_nodes(cluster)]
        if not selected:
            raise InputError(f"--cluster: no nodes in cluster {cluster!r}")
        return selected
    if names:
        for n in names:
            store.get(n)  # NotFound -> exit 2
        return list(dict.fromkeys(names))
    if resume:
        active = [r.node.name for r in store.list_nodes() if r.state in S.ACTIVE]
        queued = [n for run in store.rebuilds(runner="cli") if run.status != "done" for n in run.nodes
                  if store.node_state(n).state in (S.READY,)]
        return list(dict.fromkeys(active + queued))
    raise InputError("name the nodes to rebuild, or give --cluster (or --resume)")


def check_rebuildable(store, names: list[str], resume: bool, accept_foreign_vg: bool = False,
                      retry: bool = False) -> None:
    """Refuse before any action (exit 2, HTTP 400): no facts, unidentified install disk, no BMC
    secret, a failed node or one part-way through a rebuild without --retry (or --resume for a
    --local batch), or one named by a run the service has not finished."""
    problems = []
    busy = store.busy_nodes()
    for n in names:
        rec = store.get(n)
        if rec.node.facts is None:
            problems.append(f"node {n}: no facts snapshot; capture or import facts first")
            continue
        disk = rec.node.facts.install_disk
        if rec.node.facts.missing():
            problems.append(f"node {n}: facts snapshot #{rec.snapshot_id} is partial, missing "
                            f"{' and '.join(rec.node.facts.missing())}; capture --from node or --from file first")
        elif disk.wwn is None and disk.serial is None:
            problems.append(f"node {n}: install disk {disk.id} is not identified by WWN or serial")
        if not accept_foreign_vg:
            problems += [f"node {n}: {p}; wipe that disk first or use --accept-foreign-vg"
                         for p in foreign_vgs(rec.node, rec.node.facts)]
        if not Path(rec.node.bmc.password_file).is_file():
            problems.append(f"node {n}: bmc.password_file {rec.node.bmc.password_file} is not a readable file")
        if n in busy:
            problems.append(f"node {n}: in rebuild {busy[n]}, which the service has not finished")
        elif rec.state == S.FAILED and not (retry or resume):
            st = store.node_state(n)
            at = S.RESUME_AT.get(st.failed_step, st.failed_step)
            problems.append(f"node {n}: failed in {st.failed_step} ({st.fail_reason}); retry it (--retry, "
                            f"\"retry\": true) to resume at {at}")
        elif rec.state in S.ACTIVE and not (resume or retry):
            problems.append(f"node {n}: left part-way through a rebuild (state {rec.state}); --retry takes it over"
                            " (--resume for a --local batch)")
    if problems:
        raise InputError("\n".join(problems))


def tally(store, run) -> dict[str, list[str]]:
    """The one count of a run's nodes that `runs`, `watch`, the API and the console all show, from the
    nodes' states now: done and failed in this run, in flight in it (any active step), and the rest
    (not started by it, or taken on by a later run)."""
    out: dict[str, list[str]] = {"done": [], "failed": [], "in_flight": [], "not_started": []}
    for n in run.nodes:
        st = store.node_state(n)
        mine = st.rebuild_id == run.id
        key = ("done" if st.state == S.DONE else "failed" if st.state == S.FAILED
               else "in_flight" if st.state in S.ACTIVE else "not_started") if mine else "not_started"
        out[key].append(n)
    return out


def retry_at(store, name: str) -> str | None:
    """The step a retry of `name` resumes at: its failed step (or RESUME_AT's), or the state a run
    that ended left it in; None when there is nothing to retry (or a live run has it)."""
    st = store.node_state(name)
    if name in store.busy_nodes():
        return None
    if st.state == S.FAILED and st.failed_step in S.ACTIVE:
        return S.RESUME_AT.get(st.failed_step, st.failed_step)
    return st.state if st.state in S.ACTIVE else None


def wave_of(index: int, canary: int, max_parallel: int) -> int:
    """The wave of the batch's index-th node: canaries alone first, then max_parallel at a time."""
    return index + 1 if index < canary else canary + (index - canary) // max_parallel + 1


def plan(store, names: list[str], max_parallel: int, min_up: int | None, canary: int, ctx=None) -> dict:
    """The dry run: waves (canaries alone first) and, per node, every call it would make; with `ctx`
    (the workflow's dependencies) also the point-of-no-return gate's rows, read now without harm."""
    from . import gate

    recs = [store.get(n) for n in names]
    gates = gate.rows_of_many(ctx, [r.node for r in recs if r.node.facts is not None]) if ctx is not None else {}
    entries = []
    for i, (n, rec) in enumerate(zip(names, recs, strict=True)):
        entry = {"wave": wave_of(i, canary, max_parallel), "node": n, "canary": i < canary,
                 "calls": [{"step": st, "call": c} for st, c in plan_lines(rec.node, rec.snapshot_id)]}
        if n in gates:
            entry["gate"] = [{"system": r.system, "ok": r.ok, "detail": r.detail} for r in gates[n]]
        entries.append(entry)
    waves = entries[-1]["wave"] if entries else 0
    return {"max_parallel": max_parallel, "min_up": min_up, "canary": canary, "waves": waves, "plan": entries}


def ordered(store, order: str, names: list[str], canary: int) -> list[str]:
    """`names` in the order a batch will start them (batch.start_order), read now."""
    from .batch import start_order

    return start_order(store.node_states(names), names, canary, order)


def default_canary(canary: int | None, selected: list[str]) -> int:
    canary = min(1, len(selected)) if canary is None else canary
    if canary > len(selected):
        raise InputError(f"--canary {canary}: only {len(selected)} node(s) selected")
    return canary
