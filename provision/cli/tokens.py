"""`provision token`: personal API tokens. `create` logs the user in against the directory (their
password from the terminal, a file, or PROVISION_PASSWORD) and prints the token once."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ..errors import InputError
from ..integrations.directory import DirectoryDown, LoginRefused
from .common import audited, svc, table


@click.group()
def token() -> None:
    """Personal API tokens: create (as a directory user), list, revoke."""


def _password(password_file: str | None) -> str:
    if password_file:
        try:
            return Path(password_file).read_text().rstrip("\n")
        except OSError as exc:
            raise InputError(f"--password-file {password_file}: {exc.strerror}") from None
    if os.environ.get("PROVISION_PASSWORD"):
        return os.environ["PROVISION_PASSWORD"]
    if not sys.stdin.isatty():
        raise InputError("no password: give --password-file, set PROVISION_PASSWORD, or run on a terminal")
    return click.prompt("Password", hide_input=True)


@token.command("create")
@click.option("--user", required=True, help="the directory user the token acts as")
@click.option("--label", required=True, help="what the token is for (e.g. the script using it)")
@click.option("--days", type=click.IntRange(1), default=None, help="how long it lives (default and most: [auth] token_days)")
@click.option("--password-file", type=click.Path(dir_okay=False), help="the user's password, from this file")
@click.pass_context
def create(ctx: click.Context, user: str, label: str, days: int | None, password_file: str | None) -> None:
    s = svc(ctx)
    most = s.cfg.auth.token_days
    if days is not None and days > most:
        raise InputError(f"--days {days}: at most {most} ([auth] token_days)")
    with audited(ctx, "token.create", f"user {user}"):
        try:
            account = s.directory.authenticate(user, _password(password_file))
        except LoginRefused as exc:
            raise InputError(f"--user {user}: {exc}") from None
        except DirectoryDown as exc:
            raise InputError(str(exc)) from None
        record, value = s.store.create_api_token(account.name, account.role, label, days or most)
    click.echo(value)
    click.echo(f"token {record.id} for {account.name} ({account.role}), until {record.expires_at:%Y-%m-%d}; "
               "shown this once", err=True)


@token.command("list")
@click.option("--user", help="only this user's tokens")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, user: str | None, as_json: bool) -> None:
    rows = [{"id": t.id, "user": t.user, "role": t.role, "label": t.label,
             "expires": t.expires_at.isoformat(timespec="seconds"), "revoked": "yes" if t.revoked_at else "",
             "last_used": t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else ""}
            for t in svc(ctx).store.api_tokens(user)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table(rows, ["id", "user", "role", "label", "expires", "revoked", "last_used"])


@token.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def revoke(ctx: click.Context, token_id: int) -> None:
    with audited(ctx, "token.revoke", f"token {token_id}", role="admin"):
        t = svc(ctx).store.revoke_api_token(token_id)
    click.echo(f"revoked token {t.id} of {t.user}")
