"""`provision` command line. Exit codes: 0 success, 1 failed operation, 2 bad input."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
import yaml

from . import config as config_mod
from . import services
from .domain import load_yaml, parse_nodes
from .errors import InputError, ProvisionError
from .render import KINDS, check_kickstart


class Cli(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except ProvisionError as exc:
            click.echo(f"failed: {exc}", err=True)
            ctx.exit(1)


def _svc(ctx: click.Context) -> services.Services:
    obj = ctx.find_root().obj
    if "svc" not in obj:
        obj["svc"] = services.build(config_mod.load(obj["config"]))
        ctx.call_on_close(obj["svc"].close)
    return obj["svc"]


@click.group(cls=Cli)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="PROVISION_CONFIG",
              help="TOML config file (default: embedded defaults)")
@click.option("-v", "--verbose", is_flag=True, help="log at INFO level")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Reinstall bare-metal hypervisors unattended."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ctx.ensure_object(dict)["config"] = config_path


@main.command()
@click.option("--http", "http_bind", help="HOST:PORT for HTTP (default [server] http_bind)")
@click.option("--tftp", "tftp_bind", help="HOST:PORT for TFTP (default [server] tftp_bind)")
@click.pass_context
def serve(ctx: click.Context, http_bind: str | None, tftp_bind: str | None) -> None:
    """Serve kickstarts, boot configs, callbacks and the admin API over HTTP, and TFTP."""
    from .serve import serve as run

    svc = _svc(ctx)
    for value, what in ((http_bind, "--http"), (tftp_bind, "--tftp")):
        if value is not None:
            try:
                config_mod._bind(value)
            except ValueError as exc:
                raise InputError(f"{what}: {exc}") from None
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("tftpy").setLevel(logging.WARNING)
    run(svc, http_bind or svc.cfg.server.http_bind, tftp_bind or svc.cfg.server.tftp_bind)


# -- nodes -----------------------------------------------------------------------------------
@main.group()
def node() -> None:
    """Inventory: import, list, show."""


@node.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
def node_import(ctx: click.Context, file: str) -> None:
    """Import (create or update) nodes from a YAML inventory, all or nothing."""
    try:
        text = Path(file).read_text()
    except OSError as exc:
        raise InputError(f"{file}: {exc.strerror}") from None
    nodes = parse_nodes(load_yaml(text, file), file)
    result = _svc(ctx).store.import_nodes(nodes)
    click.echo(f"imported {len(nodes)} node(s): {len(result.created)} created, {len(result.updated)} updated, "
               f"{len(result.snapshots)} new facts snapshot(s)")


@node.command("list")
@click.option("--cluster")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def node_list(ctx: click.Context, cluster: str | None, as_json: bool) -> None:
    """List nodes."""
    store = _svc(ctx).store
    rows = [{"name": r.node.name, "fqdn": r.node.fqdn, "cluster": r.node.cluster, "profile": r.node.profile,
             "state": r.state, "snapshot": r.snapshot_id,
             "boot": "install" if store.active_build(r.node.name) else "local"}
            for r in store.list_nodes(cluster)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _table(rows, ["name", "fqdn", "cluster", "profile", "state", "snapshot", "boot"])


@node.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def node_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show one node as stored (BMC password never shown: only its file path)."""
    rec = _svc(ctx).store.get(name)
    data = rec.node.model_dump(mode="json")
    data.update(state=rec.state, snapshot=rec.snapshot_id)
    click.echo(json.dumps(data, indent=2) if as_json else yaml.safe_dump(data, sort_keys=False))


# -- facts -----------------------------------------------------------------------------------
@main.group()
def facts() -> None:
    """Facts snapshots."""


@facts.command("show")
@click.argument("name")
@click.option("--snapshot", "snapshot_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def facts_show(ctx: click.Context, name: str, snapshot_id: int | None, as_json: bool) -> None:
    """Show a facts snapshot (the latest by default)."""
    snap = _svc(ctx).store.snapshot(name, snapshot_id)
    data = {"snapshot": snap.id, "created_at": snap.created_at.isoformat(), "source": snap.source,
            "facts": snap.facts.model_dump(mode="json")}
    click.echo(json.dumps(data, indent=2) if as_json else yaml.safe_dump(data, sort_keys=False))


# -- render ----------------------------------------------------------------------------------
@main.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.option("--check", is_flag=True, help="validate the kickstart with pykickstart (RHEL8 and RHEL9)")
@click.option("--show-secrets", is_flag=True, help="print tokens and password hashes instead of ********")
@click.option("--install", is_flag=True, help="preview the install config even if the node is not armed")
@click.option("--snapshot", "snapshot_id", type=int, help="facts snapshot (default: latest)")
@click.pass_context
def render(ctx: click.Context, name: str, kind: str, check: bool, show_secrets: bool, install: bool,
           snapshot_id: int | None) -> None:
    """Print exactly what node NAME gets (secrets masked)."""
    rendered = _svc(ctx).renderer.render(name, kind, show_secrets=show_secrets, install=install or None,
                                         snapshot_id=snapshot_id)
    click.echo(rendered.text, nl=False)
    if check and kind == "kickstart":
        problems = check_kickstart(rendered.text)
        for p in problems:
            click.echo(f"check: {p}", err=True)
        if problems:
            ctx.exit(1)
        click.echo("check: kickstart valid for RHEL8 and RHEL9", err=True)


def _table(rows: list[dict], cols: list[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in cols}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols).rstrip())


if __name__ == "__main__":
    sys.exit(main())
