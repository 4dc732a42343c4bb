"""`provision rebuild` and `provision status`."""

from __future__ import annotations

import json
import sys
import threading

import click

from ..errors import InputError
from ..workflow import submit
from ..workflow.batch import Batch
from .common import svc, table


class Progress:
    """Live table (rich) on a terminal, one plain line per change otherwise, JSON lines with --json."""

    def __init__(self, names: list[str], mode: str) -> None:
        self.mode, self.lock = mode, threading.Lock()
        self.states: dict[str, tuple[str, str]] = {n: ("queued", "") for n in names}
        self.live = None
        if mode == "rich":
            from rich.live import Live

            self.live = Live(self._table(), refresh_per_second=4, transient=False)

    def _table(self):
        from rich.table import Table

        t = Table("node", "state", "detail")
        for n, (state, detail) in self.states.items():
            style = {"done": "green", "failed": "red"}.get(state, "")
            t.add_row(n, f"[{style}]{state}[/]" if style else state, detail)
        return t

    def __call__(self, name: str, state: str, detail: str | None) -> None:
        with self.lock:
            self.states[name] = (state, detail or "")
            if self.mode == "json":
                click.echo(json.dumps({"node": name, "state": state, "detail": detail}))
            elif self.mode == "plain":
                click.echo(f"{name}: {state}" + (f" ({detail})" if detail else ""))
            elif self.live:
                self.live.update(self._table())

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
@click.option("--resume", is_flag=True, help="continue nodes part-way through a rebuild; retry named failed nodes")
@click.option("--accept-drift", is_flag=True, help="rebuild even if the engine's view drifted from the snapshot")
@click.option("--allow-gluster", is_flag=True,
              help="rebuild hosts of gluster-enabled clusters (their bricks are NOT recovered)")
@click.option("--accept-foreign-vg", is_flag=True,
              help="rebuild even if a kept disk holds a volume group named like the one the install creates")
@click.option("--json", "as_json", is_flag=True, help="progress as JSON lines")
@click.pass_context
def rebuild(ctx, names, cluster, max_parallel, min_up, canary, dry_run, yes, resume, accept_drift, allow_gluster,
            accept_foreign_vg, as_json) -> None:
    """Wipe and reinstall nodes, then bring them back with the networks they had."""
    s = svc(ctx)
    selected = submit.select(s.store, names, cluster, resume)
    if not selected:
        click.echo("nothing to resume")
        return
    submit.check_rebuildable(s.store, selected, resume, accept_foreign_vg)
    last = next((r for r in reversed(s.store.rebuilds(runner="cli")) if r.status != "done"), None) if resume else None
    opts = dict(last.options) if last else {}
    max_parallel = max_parallel or opts.get("max_parallel", 1)
    min_up = min_up if min_up is not None else opts.get("min_up")
    canary = submit.default_canary(canary if canary is not None else (0 if resume else opts.get("canary")), selected)
    if dry_run:
        _print_plan(s, selected, max_parallel, min_up, canary, as_json)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise InputError("refusing to rebuild without --yes when not on a terminal")
        click.confirm(f"Wipe and reinstall {len(selected)} node(s): {', '.join(selected)}?", abort=True)
    run = last or s.store.create_rebuild(selected, {"max_parallel": max_parallel, "min_up": min_up, "canary": canary})
    mode = "json" if as_json else ("rich" if sys.stdout.isatty() else "plain")
    retry = {n for n in names} if resume else set()
    with Progress(selected, mode) as progress:
        result = Batch(s.workflow, selected, rebuild_id=run.id, max_parallel=max_parallel, min_up=min_up,
                       canary=canary, retry_failed=retry, accept_drift=accept_drift, allow_gluster=allow_gluster, resume=resume,
                       on_change=progress).run()
    s.store.set_rebuild_status(run.id, "done" if result.ok else ("failed" if result.failed else "stopped"))
    summary = {"done": result.done, "failed": result.failed, "pending": result.pending, "error": result.error,
               "peak_in_flight": result.peak_in_flight, "elsewhere": result.elsewhere}
    if as_json:
        click.echo(json.dumps({"summary": summary}))
    else:
        click.echo(f"done: {len(result.done)}, failed: {len(result.failed)}, not finished: {len(result.pending)}"
                   + (f", started by another runner: {', '.join(result.elsewhere)}" if result.elsewhere else ""))
        for n in result.failed:
            st = s.store.node_state(n)
            click.echo(f"  {n}: failed in {st.failed_step}: {st.fail_reason}", err=True)
        if result.error:
            click.echo(f"  stopped: {result.error}", err=True)
    if not result.ok:
        ctx.exit(1)


def _print_plan(s, names, max_parallel, min_up, canary, as_json) -> None:
    p = submit.plan(s.store, names, max_parallel, min_up, canary)
    if as_json:
        click.echo(json.dumps(p))
        return
    click.echo(f"plan: {len(names)} node(s), {p['waves']} wave(s), at most {max_parallel} in flight"
               + (f", keep {min_up} Up per cluster" if min_up is not None else "") + " (dry run: nothing touched)")
    for entry in p["plan"]:
        click.echo(f"\nwave {entry['wave']}: {entry['node']}" + (" (canary, alone)" if entry["canary"] else ""))
        for c in entry["calls"]:
            click.echo(f"  {c['step']:<10} {c['call']}")


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
