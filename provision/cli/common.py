"""Shared CLI plumbing: the group class mapping errors to exit codes, lazy services, tables."""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import traceback
from collections.abc import Iterator

import click

from .. import config as config_mod
from .. import services
from ..errors import InputError, ProvisionError


class Cli(click.Group):
    """Errors end a command in one line (exit 2 for bad input, 1 for a failure); --debug adds the
    traceback."""

    def invoke(self, ctx):
        debug = lambda: bool((ctx.obj or {}).get("debug"))  # noqa: E731 (set by the group's own callback)
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except ProvisionError as exc:
            if debug():
                traceback.print_exc()
            click.echo(f"failed: {exc}", err=True)
            ctx.exit(1)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if debug():
                raise
            click.echo(f"failed: {' '.join(f'{type(exc).__name__}: {exc}'.split())} (--debug shows the traceback)",
                       err=True)
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


def _local_user() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid {os.getuid()}"


def account(ctx: click.Context):
    """Who this command acts as: the personal API token given (--token-file, PROVISION_TOKEN_FILE or
    PROVISION_TOKEN), whose user and role it takes; without one, the local user, who can do what
    their access to the store allows (that is, everything: the CLI reaches the database directly)."""
    obj = ctx.find_root().obj
    if "account" not in obj:
        token = os.environ.get("PROVISION_TOKEN") or None
        if obj.get("token_file"):
            try:
                token = open(obj["token_file"]).read().strip()
            except OSError as exc:
                raise InputError(f"--token-file {obj['token_file']}: {exc.strerror}") from None
        if token is None:
            obj["account"] = None
        else:
            found = svc(ctx).store.api_token(token)
            if found is None:
                raise InputError("the API token given (--token-file or PROVISION_TOKEN) is not live: "
                                 "revoked, expired or never made")
            obj["account"] = found[1]
    return obj["account"]


def actor(ctx: click.Context | None = None) -> str:
    """Who a CLI command is, in the audit trail."""
    who = account(ctx) if ctx is not None else None
    return who.user if who is not None else _local_user()


def require(ctx: click.Context, role: str) -> None:
    """Refuse (exit 2) when the command acts with a token whose role is below `role`."""
    from ..integrations.directory import at_least

    who = account(ctx)
    if who is not None and not at_least(who.role, role):
        article = "an" if who.role[:1] in "aeiou" else "a"
        raise InputError(f"{who.user} is {article} {who.role}: this needs the {role} role")


def note(ctx: click.Context, action: str, target: str, nodes: list[str] | None = None, outcome: str = "ok") -> None:
    """One audit row for what this command just did."""
    detail = " ".join(f"[{n}]" for n in (nodes or [])[:500])
    svc(ctx).store.record_audit(actor(ctx), f"cli@{socket.gethostname()}", action, target, outcome, detail)


@contextlib.contextmanager
def audited(ctx: click.Context, action: str, target: str, nodes: list[str] | None = None,
            role: str = "viewer") -> Iterator[dict]:
    """Record the command in the audit trail when it ends: ok, refused (bad input, exit 2; a token
    whose role is below `role`) or failed. The body may set `target` in the dict it is given."""
    s = svc(ctx)
    row = {"target": target, "detail": " ".join(f"[{n}]" for n in (nodes or [])[:500])}
    who = actor(ctx)

    def write(result: str, why: str = "") -> None:
        try:
            s.store.record_audit(who, f"cli@{socket.gethostname()}", action, row["target"], result,
                                 (row["detail"] + " " + why[:300]).strip())
        except Exception:  # the command's own outcome stands
            pass
    try:
        require(ctx, role)
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
