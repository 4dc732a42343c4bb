"""`provision facts capture|show|diff|export|prune`."""

from __future__ import annotations

import json
import subprocess
import time

import click
import yaml

from ..capture import service
from ..capture.diff import diff as diff_facts
from ..domain import load_yaml, parse_nodes, read_text
from ..errors import InputError, ProvisionError
from . import many
from .common import audited, svc, table


@click.group()
def facts() -> None:
    """Facts snapshots: capture, show, diff, export, prune."""


def _print_changes(changes, prefix: str = "") -> None:
    for c in changes:
        click.echo(f"{prefix}{'DRIFT' if c.drift else 'info '}  {c.text}")


@facts.command("capture")
@click.argument("names", nargs=-1)
@many.options
@click.option("--from", "source", type=click.Choice(["engine", "node", "file"]), required=True)
@click.option("--file", "file_", type=click.Path(dir_okay=False), help="inventory with inline facts (--from file)")
@click.option("--ssh", "use_ssh", is_flag=True, help="run the collector over ssh root@FQDN (--from node)")
@click.option("--wait", "wait_s", type=click.IntRange(0), default=None,
              help="seconds to wait for the node's upload (--from node; default 0, or 600 with --ssh)")
@click.pass_context
def capture(ctx, names, cluster, parallel, source, file_, use_ssh, wait_s) -> None:
    """Capture the facts of the nodes named (or of every node of --cluster) into new immutable
    snapshots (one is kept only if something changed), several at once."""
    s = svc(ctx)
    nodes = many.targets(s.store, names, cluster)
    if source == "file" and not file_:
        raise InputError("--from file needs --file INVENTORY")
    if source == "node" and len(nodes) > 1 and not use_ssh:
        raise InputError("--from node for several nodes needs --ssh (without it, each node is told a command to run)")
    inventory = parse_nodes(load_yaml(read_text(file_, file_), file_), file_) if source == "file" else None
    if len(nodes) == 1:
        with audited(ctx, f"facts.capture.{source}", nodes[0], role="operator"):
            _capture(s, nodes[0], source, inventory, use_ssh, wait_s, show=True)
        return
    with audited(ctx, f"facts.capture.{source}", cluster or "nodes", nodes, role="operator"):
        results = many.each(ctx, nodes, lambda n: _capture(s, n, source, inventory, use_ssh, wait_s, show=False),
                            parallel, "capturing")
        rows = [{"node": n, "snapshot": f"#{got.value[0]}" if got.value else "-",
                 "result": "FAIL" if got.error else "no changes" if not got.value[1]
                 else f"{len(got.value[1])} change(s)" + (" (DRIFT)" if any(c.drift for c in got.value[1]) else ""),
                 "detail": got.error or ("partial: missing " + " and ".join(got.value[2]) if got.value[2] else "")}
                for n, got in results.items()]
        table(rows, ["node", "snapshot", "result", "detail"])
        failed = [n for n, got in results.items() if got.error]
        click.echo(f"{len(nodes)} node(s): {len(nodes) - len(failed)} captured, {len(failed)} failed")
        if failed:
            ctx.exit(1)


def _capture(s, name, source, inventory, use_ssh, wait_s, show: bool):
    """(snapshot id, changes, what the snapshot lacks) of one capture; `show`: print them."""
    wf = s
    if source == "engine":
        snap_id, changes = service.store(wf, name, service.from_engine(wf, name), "engine")
    elif source == "file":
        snap_id, changes = service.store(wf, name, service.from_file(inventory, name), "file")
    else:
        snap_id, changes = _capture_from_node(s, name, use_ssh, 600 if wait_s is None and use_ssh else (wait_s or 0),
                                              show)
        if snap_id is None:
            return None
        if not show:
            return snap_id, changes, []
        return None
    missing = s.store.snapshot(name, snap_id).facts.missing()
    if show:
        click.echo(f"{name}: facts snapshot #{snap_id} ({source})" + ("" if changes else ", no changes"))
        _print_changes(changes, "  ")
        if missing:
            click.echo(f"{name}: partial snapshot, missing {' and '.join(missing)}: capture --from node or --from file "
                       "before a rebuild")
    return snap_id, changes, missing


def _capture_from_node(s, name: str, use_ssh: bool, wait_s: int, show: bool = True):
    """(snapshot id, changes) once the node's upload arrived; (None, []) when not waiting."""
    before = len(s.store.snapshots(name)) if s.store.get(name).snapshot_id else 0
    token = s.store.create_collection(name, ttl_seconds=max(3600, wait_s))
    url = f"{s.cfg.server.public_url}/collect.sh?token={token}"
    fqdn = s.store.get(name).node.fqdn
    if use_ssh:
        script = service.collector_script(s, s.renderer.env, token)
        res = subprocess.run(["ssh", "-o", "BatchMode=yes", f"root@{fqdn}", "sh", "-s"], input=script, text=True,
                             capture_output=True, timeout=max(60, wait_s))
        if res.returncode != 0:
            raise ProvisionError(f"ssh root@{fqdn}: exit {res.returncode}: {res.stderr.strip()[:300]}")
    else:
        click.echo(f"run on {fqdn} as root (one-time token):\n  curl -fsS '{url}' | sh\n"
                   f"or from here:\n  curl -fsS '{url}' | ssh root@{fqdn} sh")
    deadline = time.monotonic() + wait_s
    while wait_s and time.monotonic() < deadline:
        if s.store.collection_node(token) is None:  # used up: the upload arrived
            snaps = s.store.snapshots(name)
            new = len(snaps) > before
            if show:
                click.echo(f"{name}: facts snapshot #{snaps[-1].id} (node)" + ("" if new else ", no changes"))
            changes = diff_facts(snaps[-2].facts, snaps[-1].facts) if new and len(snaps) > 1 else []
            return snaps[-1].id, changes
        time.sleep(1)
    if wait_s:
        raise ProvisionError(f"node {name}: no upload within {wait_s} s")
    return None, []


@facts.command("show")
@click.argument("name")
@click.option("--snapshot", "snapshot_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def facts_show(ctx, name, snapshot_id, as_json) -> None:
    """Show a facts snapshot (the latest by default) and list all snapshots."""
    s = svc(ctx)
    snap = s.store.snapshot(name, snapshot_id)
    data = {"snapshot": snap.id, "created_at": snap.created_at.isoformat(), "source": snap.source,
            "facts": snap.facts.model_dump(mode="json"), "missing": snap.facts.missing(),
            "snapshots": [{"id": x.id, "created_at": x.created_at.isoformat(timespec="seconds"), "source": x.source}
                          for x in s.store.snapshots(name)]}
    click.echo(json.dumps(data, indent=2) if as_json else yaml.safe_dump(data, sort_keys=False))
    if snap.facts.missing() and not as_json:
        click.echo(f"partial snapshot: missing {' and '.join(snap.facts.missing())}; render and rebuild refuse "
                   "this node until `facts capture --from node` or `--from file` supplies them")


@facts.command("diff")
@click.argument("args", nargs=-1, metavar="NAME... [A [B]]")
@many.options
@click.pass_context
def facts_diff(ctx, args, cluster, parallel) -> None:
    """Differences between a node's snapshots A and B (default: its two latest); for several nodes
    (or --cluster), each one's two latest, as one table. Exit 1 on drift."""
    names = [a for a in args if not a.isdigit()]
    ids = [int(a) for a in args if a.isdigit()]
    if ids and (len(names) != 1 or cluster or args[:1] != tuple(names) or len(ids) > 2):
        raise InputError("snapshot ids A [B] go after a single node's name")
    s = svc(ctx)
    nodes = many.targets(s.store, names, cluster)
    if len(nodes) == 1 and not cluster:
        a, b = (ids + [None, None])[:2]
        old, new, changes = _diff(s, nodes[0], a, b)
        click.echo(f"{nodes[0]}: #{old.id} ({old.source}) -> #{new.id} ({new.source}): "
                   + (f"{len(changes)} change(s)" if changes else "no changes"))
        _print_changes(changes, "  ")
        if any(c.drift for c in changes):
            ctx.exit(1)
        return
    results = many.each(ctx, nodes, lambda n: _diff(s, n, strict=False), parallel, "comparing")
    rows, drifted = [], []
    for n, got in results.items():
        if got.error or got.value is None:
            rows.append({"node": n, "snapshots": "-", "result": "FAIL" if got.error else "one snapshot",
                         "detail": got.error or "nothing to compare"})
            continue
        old, new, changes = got.value
        drift = [c for c in changes if c.drift]
        drifted += [n] if drift else []
        rows.append({"node": n, "snapshots": f"#{old.id} -> #{new.id}",
                     "result": ("DRIFT" if drift else "changes" if changes else "no changes"),
                     "detail": "; ".join(c.text for c in (drift or changes))[:200]})
    table(rows, ["node", "snapshots", "result", "detail"])
    click.echo(f"{len(nodes)} node(s): {len(drifted)} drifted" + (f" ({', '.join(drifted)})" if drifted else ""))
    if drifted or any(got.error for got in results.values()):
        ctx.exit(1)


def _diff(s, name: str, a: int | None = None, b: int | None = None, strict: bool = True):
    """(old, new, changes) of snapshots A and B of `name` (default: the two latest); None when it
    has fewer than two and not `strict`."""
    snaps = s.store.snapshots(name)
    if a is None:
        if len(snaps) < 2:
            if not strict:
                return None
            raise InputError(f"node {name}: only {len(snaps)} snapshot(s); nothing to compare")
        old, new = snaps[-2], snaps[-1]
    else:
        by_id = {x.id: x for x in snaps}
        if a not in by_id or (b is not None and b not in by_id):
            raise InputError(f"node {name}: snapshots are {', '.join(map(str, by_id))}")
        old, new = by_id[a], by_id[b] if b is not None else snaps[-1]
    return old, new, diff_facts(old.facts, new.facts)


@facts.command("export")
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["yaml"]), default="yaml")
@click.pass_context
def facts_export(ctx, names, fmt) -> None:
    """Write nodes with their latest facts as an inventory (re-importable with `node import`)."""
    s = svc(ctx)
    recs = [s.store.get(n) for n in names] if names else s.store.list_nodes()
    nodes = []
    for rec in recs:
        data = rec.node.model_dump(mode="json", exclude_none=True)
        nodes.append(data)
    click.echo(yaml.safe_dump({"nodes": nodes}, sort_keys=False), nl=False)


@facts.command("prune")
@click.argument("name")
@click.option("--keep", type=click.IntRange(1), required=True, help="newest snapshots to keep (at least 1)")
@click.pass_context
def facts_prune(ctx, name, keep) -> None:
    """Delete old snapshots of NAME beyond the newest KEEP (never one a build or rebuild pins)."""
    with audited(ctx, "facts.prune", name, role="admin"):
        deleted = svc(ctx).store.prune_snapshots(name, keep)
    click.echo(f"{name}: pruned {len(deleted)} snapshot(s)" + (f": {', '.join(map(str, deleted))}" if deleted else ""))
