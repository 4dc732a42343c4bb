"""Shared CLI plumbing: the group class mapping errors to exit codes, lazy services, tables."""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from collections.abc import Iterator

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


def actor() -> str:
    """Who a CLI command is, in the audit trail: the local user (the CLI reaches the store directly)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid {os.getuid()}"


def note(ctx: click.Context, action: str, target: str, nodes: list[str] | None = None, outcome: str = "ok") -> None:
    """One audit row for what this command just did."""
    detail = " ".join(f"[{n}]" for n in (nodes or [])[:500])
    svc(ctx).store.record_audit(actor(), f"cli@{socket.gethostname()}", action, target, outcome, detail)


@contextlib.contextmanager
def audited(ctx: click.Context, action: str, target: str, nodes: list[str] | None = None) -> Iterator[dict]:
    """Record the command in the audit trail when it ends: ok, refused (bad input, exit 2) or failed.
    The body may set `target` in the dict it is given (e.g. the run it created)."""
    s = svc(ctx)
    row = {"target": target, "detail": " ".join(f"[{n}]" for n in (nodes or [])[:500])}

    def write(result: str, why: str = "") -> None:
        try:
            s.store.record_audit(actor(), f"cli@{socket.gethostname()}", action, row["target"], result,
                                 (row["detail"] + " " + why[:300]).strip())
        except Exception:  # the command's own outcome stands
            pass
    try:
        yield row
    except InputError as exc:
        write("refused", str(exc))
        raise
    except (click.exceptions.Abort, KeyboardInterrupt):
        write("refused", "not confirmed")
        raise
    except click.exceptions.Exit as exc:
        write("ok" if exc.exit_code == 0 else "failed")
        raise
    except Exception as exc:
        write("failed", str(exc))
        raise
    write("ok")


def table(rows: list[dict], cols: list[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in cols}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip())
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols).rstrip())
