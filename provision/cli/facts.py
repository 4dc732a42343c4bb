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
from .common import audited, svc


@click.group()
def facts() -> None:
    """Facts snapshots: capture, show, diff, export, prune."""


def _print_changes(changes, prefix: str = "") -> None:
    for c in changes:
        click.echo(f"{prefix}{'DRIFT' if c.drift else 'info '}  {c.text}")


@facts.command("capture")
@click.argument("name")
@click.option("--from", "source", type=click.Choice(["engine", "node", "file"]), required=True)
@click.option("--file", "file_", type=click.Path(dir_okay=False), help="inventory with inline facts (--from file)")
@click.option("--ssh", "use_ssh", is_flag=True, help="run the collector over ssh root@FQDN (--from node)")
@click.option("--wait", "wait_s", type=click.IntRange(0), default=None,
              help="seconds to wait for the node's upload (--from node; default 0, or 600 with --ssh)")
@click.pass_context
def capture(ctx, name, source, file_, use_ssh, wait_s) -> None:
    """Capture NAME's facts into a new immutable snapshot (kept only if something changed)."""
    s = svc(ctx)
    s.store.get(name)
    with audited(ctx, f"facts.capture.{source}", name, role="operator"):
        _capture(ctx, s, name, source, file_, use_ssh, wait_s)


def _capture(ctx, s, name, source, file_, use_ssh, wait_s) -> None:
    wf = s
    if source == "engine":
        snap_id, changes = service.store(wf, name, service.from_engine(wf, name), "engine")
    elif source == "file":
        if not file_:
            raise InputError("--from file needs --file INVENTORY")
        nodes = parse_nodes(load_yaml(read_text(file_, file_), file_), file_)
        snap_id, changes = service.store(wf, name, service.from_file(nodes, name), "file")
    else:
        _capture_from_node(s, name, use_ssh, 600 if wait_s is None and use_ssh else (wait_s or 0))
        return
    click.echo(f"{name}: facts snapshot #{snap_id} ({source})" + ("" if changes else ", no changes"))
    _print_changes(changes, "  ")
    missing = s.store.snapshot(name, snap_id).facts.missing()
    if missing:
        click.echo(f"{name}: partial snapshot, missing {' and '.join(missing)}: capture --from node or --from file "
                   "before a rebuild")


def _capture_from_node(s, name: str, use_ssh: bool, wait_s: int) -> None:
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
            click.echo(f"{name}: facts snapshot #{snaps[-1].id} (node)" + ("" if len(snaps) > before else ", no changes"))
            return
        time.sleep(1)
    if wait_s:
        raise ProvisionError(f"node {name}: no upload within {wait_s} s")


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
@click.argument("name")
@click.argument("a", type=int, required=False)
@click.argument("b", type=int, required=False)
@click.pass_context
def facts_diff(ctx, name, a, b) -> None:
    """Differences between snapshots A and B (default: the two latest). Exit 1 on drift."""
    snaps = svc(ctx).store.snapshots(name)
    if a is None:
        if len(snaps) < 2:
            raise InputError(f"node {name}: only {len(snaps)} snapshot(s); nothing to compare")
        old, new = snaps[-2], snaps[-1]
    else:
        by_id = {x.id: x for x in snaps}
        if a not in by_id or (b is not None and b not in by_id):
            raise InputError(f"node {name}: snapshots are {', '.join(map(str, by_id))}")
        old, new = by_id[a], by_id[b] if b is not None else snaps[-1]
    changes = diff_facts(old.facts, new.facts)
    click.echo(f"{name}: #{old.id} ({old.source}) -> #{new.id} ({new.source}): "
               + (f"{len(changes)} change(s)" if changes else "no changes"))
    _print_changes(changes, "  ")
    if any(c.drift for c in changes):
        ctx.exit(1)


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
