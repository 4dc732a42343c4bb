"""Shared CLI plumbing: the group class mapping errors to exit codes, lazy services, tables."""

from __future__ import annotations

import click

from .. import config as config_mod
from .. import services
from ..errors import InputError, ProvisionError


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


def cfg(ctx: click.Context) -> config_mod.Config:
    obj = ctx.find_root().obj
    if "cfg" not in obj:
        obj["cfg"] = config_mod.load(obj["config"], obj.get("state_dir"))
    return obj["cfg"]


def svc(ctx: click.Context, create: bool = False) -> services.Services:
    """The services, on the database the config names. It must exist unless `create` (`serve`,
    `node import`): a command run from the wrong directory or with the wrong config says where it
    looked (exit 2) instead of working on a new, empty database."""
    obj = ctx.find_root().obj
    if "svc" not in obj:
        obj["svc"] = services.build(cfg(ctx), create=create)
        ctx.call_on_close(obj["svc"].close)
    return obj["svc"]


def table(rows: list[dict], cols: list[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in cols}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols).rstrip())
