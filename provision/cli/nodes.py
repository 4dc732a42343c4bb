"""`provision node` and `render`."""

from __future__ import annotations

import json
import sys

import click
import yaml

from ..domain import load_yaml, parse_nodes, read_text
from ..domain.inventory import no_gc
from ..errors import InputError
from ..render import KINDS, check_kickstart
from ..render.checks import foreign_vgs
from ..render.scripts import check_scripts
from .common import audited, svc, table


def ctx_created(ctx: click.Context) -> click.Context:
    """`ctx`, its services opened on a database this command may create (`node import`)."""
    svc(ctx, create=True)
    return ctx


# -- nodes -----------------------------------------------------------------------------------
@click.group()
def node() -> None:
    """Inventory: import, list, show."""


@node.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
def node_import(ctx: click.Context, file: str) -> None:
    """Import (create or update) nodes from a YAML inventory, all or nothing."""
    with no_gc():  # a short-lived command building thousands of objects that all stay alive
        nodes = parse_nodes(load_yaml(read_text(file, file), file), file)
        with audited(ctx_created(ctx), "node.import", "inventory", [n.name for n in nodes], role="admin"):
            result = svc(ctx).store.import_nodes(nodes)
    click.echo(f"imported {len(nodes)} node(s): {len(result.created)} created, {len(result.updated)} updated, "
               f"{len(result.snapshots)} new facts snapshot(s)")


@node.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="do not ask")
@click.pass_context
def node_remove(ctx: click.Context, name: str, yes: bool) -> None:
    """Remove a node and everything stored of it (facts snapshots, events, logs); refused while a
    rebuild has it. `provision db backup` first keeps a copy."""
    from ..workflow.removal import remove_node

    store = svc(ctx).store
    store.node_state(name)  # NotFound first, before asking
    if not yes:
        if not sys.stdin.isatty():
            raise InputError("refusing to remove a node without --yes when not on a terminal")
        click.confirm(f"Remove node {name} and its facts, events and logs from the store?", abort=True)
    with audited(ctx, "node.remove", name, role="admin"):
        remove_node(store, name)
    click.echo(f"removed node {name}")


@node.command("list")
@click.option("--cluster")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def node_list(ctx: click.Context, cluster: str | None, as_json: bool) -> None:
    """List nodes."""
    store = svc(ctx).store
    rows = [{"name": r.node.name, "fqdn": r.node.fqdn, "cluster": r.node.cluster, "profile": r.node.profile,
             "state": r.state, "snapshot": r.snapshot_id,
             "boot": "install" if store.active_build(r.node.name) else "local"}
            for r in store.list_nodes(cluster)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table(rows, ["name", "fqdn", "cluster", "profile", "state", "snapshot", "boot"])


@node.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def node_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show one node as stored (BMC password never shown: only its file path)."""
    rec = svc(ctx).store.get(name)
    data = rec.node.model_dump(mode="json")
    data.update(state=rec.state, snapshot=rec.snapshot_id)
    click.echo(json.dumps(data, indent=2) if as_json else yaml.safe_dump(data, sort_keys=False))


# -- render ----------------------------------------------------------------------------------
@click.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.option("--check", is_flag=True, help="validate the kickstart with pykickstart (RHEL8 and RHEL9) and the "
              "disks (kept disks holding the install's VG name); exit 1 on any problem")
@click.option("--show-secrets", is_flag=True, help="print tokens and password hashes instead of ********")
@click.option("--install", is_flag=True, help="preview the install config even if the node is not armed")
@click.option("--snapshot", "snapshot_id", type=int, help="facts snapshot (default: latest)")
@click.pass_context
def render(ctx: click.Context, name: str, kind: str, check: bool, show_secrets: bool, install: bool,
           snapshot_id: int | None) -> None:
    """Print exactly what node NAME gets (secrets masked)."""
    rendered = svc(ctx).renderer.render(name, kind, show_secrets=show_secrets, install=install or None,
                                         snapshot_id=snapshot_id)
    click.echo(rendered.text, nl=False)
    if check:
        node = svc(ctx).store.get(name).node
        snap = svc(ctx).store.snapshot(name, snapshot_id)
        problems = ((check_kickstart(rendered.text) + check_scripts(rendered.text) if kind == "kickstart" else [])
                    + foreign_vgs(node, snap.facts))
        for p in problems:
            click.echo(f"check: {p}", err=True)
        if problems:
            ctx.exit(1)
        click.echo("check: kickstart valid for RHEL8 and RHEL9" if kind == "kickstart" else "check: no problems",
                   err=True)
