"""`provision rebuild` and `provision status`."""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from datetime import datetime

import click

from ..errors import InputError
from ..store import utcnow
from ..workflow import states as S
from ..workflow import submit
from ..workflow.batch import Batch
from ..workflow.lease import Keeper
from ..workflow.timeline import duration, forecast
from .common import note, require, svc, table


class Progress:
    """Live table (rich) on a terminal, one plain line per change otherwise, JSON lines with --json.
    The table's `detail` is the node's current step and how long it has been in it (a failed
    node's reason, a done node's rebuild time)."""

    def __init__(self, names: list[str], mode: str, clock=utcnow) -> None:
        self.mode, self.lock, self.clock = mode, threading.Lock(), clock
        self.states: dict[str, tuple[str, str, datetime | None]] = {n: ("queued", "", None) for n in names}
        self.live = None
        if mode == "rich":
            from rich.live import Live

            self.live = Live(self, refresh_per_second=2, transient=False)

    def rows(self) -> list[tuple[str, str, str]]:
        """(node, state, detail) as the table shows them now."""
        now, out = self.clock(), []
        for n, (state, detail, since) in self.states.items():
            if not detail and since is not None and state in S.ACTIVE:
                detail = f"{state} for {duration((now - since).total_seconds())}"
            out.append((n, state, detail))
        return out

    def __rich__(self):  # drawn again on every refresh: the durations move
        from rich.table import Table

        t = Table("node", "state", "detail")
        for n, state, detail in self.rows():
            style = {"done": "green", "failed": "red"}.get(state, "")
            t.add_row(n, f"[{style}]{state}[/]" if style else state, detail)
        return t

    def __call__(self, name: str, state: str, detail: str | None, since: datetime | None = None) -> None:
        with self.lock:
            if since is None and self.states.get(name, ("", "", None))[0] != state:
                since = self.clock()
            elif since is None:
                since = self.states[name][2]
            self.states[name] = (state, detail or "", since)
            if self.mode == "json":
                click.echo(json.dumps({"node": name, "state": state, "detail": detail,
                                       "since": since.isoformat(timespec="seconds") if since else None}))
            elif self.mode == "plain":
                click.echo(f"{name}: {state}" + (f" ({detail})" if detail else ""))
            elif self.live:
                self.live.refresh()

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.__exit__(*exc)


@click.command()
@click.argument("names", nargs=-1)
@click.option("--cluster", help="every node of this cluster")
@click.option("--max-parallel", type=click.IntRange(1, 500), default=None, help="nodes in flight at once (default 1)")
@click.option("--min-up", type=click.IntRange(0), default=None, help="hosts that must stay Up per cluster")
@click.option("--canary", type=click.IntRange(0), default=None,
              help="rebuild the first K nodes alone first (default 1; --canary 0 starts the batch at once)")
@click.option("--dry-run", is_flag=True, help="print the plan; touch nothing")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--resume", is_flag=True,
              help="continue a --local batch part-way through (nodes, retry named failed nodes); implies --local")
@click.option("--retry", is_flag=True,
              help="take failed nodes back at the step that failed (an install that failed: a new build), and nodes "
                   "left part-way by a run that ended")
@click.option("--local", is_flag=True, help="run the batch in this process, not in the service")
@click.option("--detach", is_flag=True, help="submit to the service and return at once (print the run's id)")
@click.option("--wait", is_flag=True, help="follow without the live display; the exit code is the run's result")
@click.option("--accept-drift", is_flag=True, help="rebuild even if the engine's view drifted from the snapshot")
@click.option("--allow-gluster", is_flag=True,
              help="rebuild hosts of gluster-enabled clusters (their bricks are NOT recovered)")
@click.option("--accept-foreign-vg", is_flag=True,
              help="rebuild even if a kept disk holds a volume group named like the one the install creates")
@click.option("--json", "as_json", is_flag=True, help="progress as JSON lines")
@click.option("--verbose", is_flag=True, help="with --dry-run: every call each node would make, and each gate row")
@click.pass_context
def rebuild(ctx, names, cluster, max_parallel, min_up, canary, dry_run, yes, resume, retry, local, detach, wait,
            accept_drift, allow_gluster, accept_foreign_vg, as_json, verbose) -> None:
    """Wipe and reinstall nodes, then bring them back with the networks they had.

    The batch is submitted to the service (a `provision serve` runs it, and goes on if this
    command ends) and followed here: Ctrl-C detaches, `provision watch ID` re-attaches. Exit 0
    when every node is done, 1 otherwise. --local runs it in this process instead."""
    s = svc(ctx)
    if not dry_run:
        require(ctx, "operator")
    local = local or resume
    if local and detach:
        raise InputError("--detach: a --local batch runs in this process; submit it to the service instead")
    selected = submit.select(s.store, names, cluster, resume)
    if not selected:
        click.echo("nothing to resume")
        return
    submit.check_rebuildable(s.store, selected, resume, accept_foreign_vg, retry=retry)
    last = next((r for r in reversed(s.store.rebuilds(runner="cli")) if r.status != "done"), None) if resume else None
    opts = dict(last.options) if last else {}
    max_parallel = max_parallel or opts.get("max_parallel", 1)
    min_up = min_up if min_up is not None else opts.get("min_up")
    canary = submit.default_canary(canary if canary is not None else (0 if resume else opts.get("canary")), selected)
    selected = submit.ordered(s.store, s.cfg.defaults.batch_order, selected, canary)
    if dry_run:
        _print_plan(s, selected, max_parallel, min_up, canary, as_json, verbose)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise InputError("refusing to rebuild without --yes when not on a terminal")
        click.confirm(f"Wipe and reinstall {len(selected)} node(s): {', '.join(selected)}?", abort=True)
    mode = _mode(wait, as_json)
    if not local:
        options = {"max_parallel": max_parallel, "min_up": min_up, "canary": canary, "accept_drift": accept_drift,
                   "allow_gluster": allow_gluster, "retry": retry}
        run = s.store.create_rebuild(selected, options, runner="service")
        note(ctx, "rebuild.retry" if retry else "rebuild.submit", f"rebuild {run.id}", selected)
        if detach:
            click.echo(run.id)
            click.echo(f"rebuild {run.id} submitted; the service runs it. Follow it: provision watch {run.id}", err=True)
            return
        click.echo(f"rebuild {run.id} submitted; following it (Ctrl-C detaches, the run goes on)", err=True)
        ctx.exit(follow(s, run.id, mode, as_json))
    run = last or s.store.create_rebuild(selected, {"max_parallel": max_parallel, "min_up": min_up, "canary": canary})
    note(ctx, "rebuild.resume" if last else "rebuild.local", f"rebuild {run.id}", selected)
    keeper = Keeper(s.store, run.id, s.cfg.server.run_lease).take()
    retry = set(selected) if retry else ({n for n in names} if resume else set())
    with Progress(selected, mode) as progress:
        batch = Batch(s, selected, rebuild_id=run.id, max_parallel=max_parallel, min_up=min_up,
                      canary=canary, retry=retry, accept_drift=accept_drift, allow_gluster=allow_gluster, resume=resume,
                      on_change=progress)
        keeper.keep(batch)
        try:
            result = batch.run()
        except BaseException as exc:  # an engine error in the scheduler, Ctrl-C: the run ends, it does not hang
            keeper.release("failed" if isinstance(exc, Exception) else "stopped",
                           {"done": batch.result.done, "failed": batch.result.failed, "pending": selected,
                            "error": f"{type(exc).__name__}: {exc}"})
            raise
    status_ = "done" if result.ok else ("failed" if result.failed else "stopped")
    summary = {"done": result.done, "failed": result.failed, "pending": result.pending, "error": result.error,
               "peak_in_flight": result.peak_in_flight, "elsewhere": result.elsewhere}
    keeper.release(status_, summary, ctx=s)
    _print_summary(s, run, summary, as_json)
    if not result.ok:
        ctx.exit(1)


def _mode(wait: bool, as_json: bool) -> str:
    """How progress is shown: JSON lines, nothing but the end (--wait), a live table, or lines."""
    if as_json:
        return "json"
    return "none" if wait else ("rich" if sys.stdout.isatty() else "plain")


def _print_summary(s, run, summary: dict, as_json: bool, status_: str | None = None) -> None:
    """The run's end: its counts from submit.tally (as `runs`, the API and the console count), and
    why each failed node failed."""
    counts = submit.tally(s.store, s.store.rebuild(run.id))
    if as_json:
        click.echo(json.dumps({"summary": summary, "counts": {k: len(v) for k, v in counts.items()}}
                              | ({"status": status_} if status_ else {})))
        return
    elsewhere = summary.get("elsewhere") or []
    left = counts["in_flight"] + counts["not_started"]
    click.echo((f"{status_}: " if status_ else "") + f"done: {len(counts['done'])}, "
               f"failed: {len(counts['failed'])}, not finished: {len(left)}"
               + (f", started by another runner: {', '.join(elsewhere)}" if elsewhere else ""))
    for n in counts["in_flight"]:
        st = s.store.node_state(n)
        click.echo(f"  {n}: left {st.state}: `provision rebuild {n} --retry` takes it over", err=True)
    for n in counts["failed"]:
        st = s.store.node_state(n)
        click.echo(f"  {n}: failed in {st.failed_step}: {st.fail_reason}", err=True)
    if summary.get("error"):
        click.echo(f"  stopped: {summary['error']}", err=True)


def _detail(st) -> str | None:
    """What the live display says of a node beyond its state: why it failed, how long its rebuild
    took (the step and its time are drawn from `since`)."""
    if st.state == S.FAILED:
        return f"in {st.failed_step}: {st.fail_reason}"
    if st.state == S.DONE and st.last_rebuild_seconds:
        return f"rebuilt in {duration(st.last_rebuild_seconds)}"
    return None


def follow(s, run_id: int, mode: str, as_json: bool) -> int:
    """Show a run's nodes as they move, from the store (the run may be in any `serve`), until it
    ends: 0 if every node is done, 1 otherwise; 130 when Ctrl-C detaches (the run goes on)."""
    store, poll = s.store, min(1.0, s.cfg.defaults.poll_interval)
    run = store.rebuild(run_id)
    shown: dict[str, tuple[str, str | None]] = {}
    started, warned, said = time.monotonic(), False, None
    try:
        with Progress(run.nodes, mode) as progress:
            while True:
                run = store.rebuild(run_id)
                for n in run.nodes:
                    st = store.node_state(n)
                    mine = st.rebuild_id == run_id
                    now = (st.state if mine else "queued", _detail(st) if mine else None)
                    if shown.get(n, ("queued", None)) != now:
                        progress(n, *now, since=st.step_started_at if mine else None)
                    shown[n] = now
                if run.finished:
                    break
                note = {"paused": "paused: no node starts until the run is continued",
                        "queued": None}.get(run.status)
                if run.control in ("pause", "abort") and run.status == "running":
                    note = f"{run.control} asked: the nodes in flight finish, nothing new starts"
                if note and note != said and mode != "json":
                    click.echo(f"rebuild {run_id}: {note}", err=True)
                said = note or said
                if run.status == "queued" and not warned and time.monotonic() - started > max(10.0, 3 * poll):
                    click.echo(f"rebuild {run_id}: no `provision serve` has taken it yet; is one running "
                               "on this database?", err=True)
                    warned = True
                time.sleep(poll)
    except KeyboardInterrupt:
        click.echo(f"\ndetached from rebuild {run_id}; it goes on in the service. Re-attach: provision watch {run_id}",
                   err=True)
        return 130
    _print_summary(s, run, run.summary or {}, as_json, run.status)
    return 0 if run.status == "done" else 1


@click.command()
@click.argument("run_id", type=int, required=False)
@click.option("--wait", is_flag=True, help="no live display; the exit code is the run's result")
@click.option("--json", "as_json", is_flag=True, help="progress as JSON lines")
@click.pass_context
def watch(ctx, run_id, wait, as_json) -> None:
    """Follow a rebuild run (default: the newest one not finished, else the newest). Ctrl-C
    detaches; exit 0 when every node is done, 1 otherwise."""
    s = svc(ctx)
    runs = s.store.rebuilds()
    if run_id is None:
        if not runs:
            raise InputError("no rebuild runs yet")
        run_id = next((r.id for r in reversed(runs) if not r.finished), runs[-1].id)
    s.store.rebuild(run_id)  # NotFound -> exit 2
    ctx.exit(follow(s, run_id, _mode(wait, as_json), as_json))


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs(ctx, as_json) -> None:
    """Rebuild runs, newest first: status, who runs them, their nodes."""
    s = svc(ctx)
    rows = []
    for r in reversed(s.store.rebuilds()):
        counts = submit.tally(s.store, r)
        status_ = f"{r.status} (runner gone)" if s.store.runner_gone(r) else r.status
        rows.append({"id": r.id, "status": status_, "runner": r.runner, "control": r.control, "nodes": len(r.nodes),
                     "done": len(counts["done"]), "failed": len(counts["failed"]),
                     "created": r.created_at.isoformat(timespec="seconds"), "owner": r.owner or ""})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        table(rows, ["id", "status", "runner", "control", "nodes", "done", "failed", "created", "owner"])


def _print_plan(s, names, max_parallel, min_up, canary, as_json, verbose=False) -> None:
    """The dry run: a line per node (its wave, and the point-of-no-return gate's result read now)
    and the total with an estimate from the nodes' last rebuilds; --verbose: every call and row."""
    p = submit.plan(s.store, names, max_parallel, min_up, canary, ctx=s)
    states = s.store.node_states(names)
    known = [st.last_rebuild_seconds for st in states.values() if st.last_rebuild_seconds]
    typical = statistics.median(known) if known else None
    costs = [states[n].last_rebuild_seconds or typical or 0.0 for n in names]
    eta = forecast(costs, canary, max_parallel) if typical else None
    p["estimate_seconds"] = eta
    if as_json:
        click.echo(json.dumps(p))
        return
    click.echo(f"plan: {len(names)} node(s), {p['waves']} wave(s), at most {max_parallel} in flight"
               + (f", keep {min_up} Up per cluster" if min_up is not None else "") + " (dry run: nothing touched)")
    if verbose:
        _print_calls(p)
    rows, stops = [], []
    for entry in p["plan"]:
        gate_rows = entry.get("gate", [])
        bad = [g for g in gate_rows if not g["ok"]]
        stops += [entry["node"]] if bad or not gate_rows else []
        last = states[entry["node"]].last_rebuild_seconds
        rows.append({"wave": entry["wave"], "node": entry["node"] + (" (canary)" if entry["canary"] else ""),
                     "gate": "FAIL" if bad else "PASS" if gate_rows else "-",
                     "last": duration(last) if last else "-",
                     "detail": ("; ".join(f"{g['system']}: {g['detail']}" for g in bad)[:160] if bad
                                else "" if gate_rows else "no facts: the gate cannot be read")})
    if not verbose:
        click.echo()
        table(rows, ["wave", "node", "gate", "last", "detail"])
    click.echo(f"\ntotal: {len(names)} node(s), {len(names) - len(stops)} pass the gate"
               + (f", {len(stops)} would stop in preflight before anything is deleted ({', '.join(stops)})"
                  if stops else "")
               + (f"; estimated {duration(eta)} from the last rebuilds ({len(known)} recorded)" if eta
                  else "; no estimate: none of these nodes has a rebuild recorded"))


def _print_calls(p: dict) -> None:
    for entry in p["plan"]:
        click.echo(f"\nwave {entry['wave']}: {entry['node']}" + (" (canary, alone)" if entry["canary"] else ""))
        for c in entry["calls"]:
            click.echo(f"  {c['step']:<10} {c['call']}")
        gate_rows = entry.get("gate", [])
        bad = [g for g in gate_rows if not g["ok"]]
        click.echo(f"  gate       {'PASS' if not bad else 'FAIL: stops in preflight, before anything is deleted'}")
        for g in gate_rows:
            click.echo(f"    {'ok  ' if g['ok'] else 'FAIL'} {g['system']}: {g['detail']}")


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx, name, as_json) -> None:
    """Where every node stands; with NAME, its event log."""
    s = svc(ctx)
    if name is None:
        rows = []
        for r in s.store.list_nodes():
            st = s.store.node_state(r.node.name)
            rows.append({"name": st.name, "cluster": st.cluster, "state": st.state,
                         "since": st.step_started_at.isoformat(timespec="seconds") if st.step_started_at else "",
                         "failed_step": st.failed_step or "", "reason": (st.fail_reason or "")[:80]})
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            table(rows, ["name", "cluster", "state", "since", "failed_step", "reason"])
        return
    st = s.store.node_state(name)
    events = [{"ts": e.ts.isoformat(timespec="seconds"), "kind": e.kind, "message": e.message}
              for e in s.store.events(name)]
    logs = [{"ts": ts.isoformat(timespec="seconds"), "kind": kind, "bytes": len(text)} for ts, kind, text in
            s.store.logs(name)]
    data = {"name": st.name, "state": st.state, "failed_step": st.failed_step, "reason": st.fail_reason,
            "since": st.step_started_at.isoformat(timespec="seconds") if st.step_started_at else None,
            "events": events, "logs": logs}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{st.name}: {st.state}" + (f" (failed in {st.failed_step}: {st.fail_reason})" if st.failed_step else ""))
    for e in events:
        click.echo(f"  {e['ts']}  {e['kind']:<16} {e['message']}")
    for entry in logs:
        click.echo(f"  {entry['ts']}  log {entry['kind']} ({entry['bytes']} bytes)")
