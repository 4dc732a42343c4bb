"""`provision` command line. Exit codes: 0 success, 1 failed operation, 2 bad input."""

from __future__ import annotations

import logging
import os

import click

from .. import config as config_mod
from ..errors import InputError
from .audit import audit
from .check import check
from .common import Cli, svc
from .db import db
from .dhcp import dhcp
from .facts import facts
from .media import media
from .nodes import node, render
from .rebuild import rebuild, runs, status, watch
from .tokens import token


@click.group(cls=Cli)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="PROVISION_CONFIG",
              help="TOML config file (default: /etc/provision/provision.toml if it exists, else embedded defaults)")
@click.option("--state-dir", type=click.Path(file_okay=False), envvar="PROVISION_STATE_DIR",
              help="replaces [paths] state_dir (the database, secrets and media under it unless set on their own)")
@click.option("--token-file", type=click.Path(dir_okay=False), envvar="PROVISION_TOKEN_FILE",
              help="act as the user of this personal API token, with its role (or PROVISION_TOKEN)")
@click.option("-v", "--verbose", is_flag=True, help="log at INFO level")
@click.option("--debug", is_flag=True, help="log at DEBUG level; print the traceback of a failure")
@click.version_option(package_name="provision", prog_name="provision")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, state_dir: str | None, token_file: str | None,
         verbose: bool, debug: bool) -> None:
    """Reinstall bare-metal hypervisors unattended."""
    os.umask(0o077)  # state files (database, WAL, secrets, power markers) are private to the owner
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ctx.ensure_object(dict).update(config=config_path, state_dir=state_dir, token_file=token_file, debug=debug)


@main.command()
@click.option("--http", "http_bind", help="HOST:PORT for HTTP (default [server] http_bind)")
@click.option("--tftp", "tftp_bind", help="HOST:PORT for TFTP (default [server] tftp_bind)")
@click.pass_context
def serve(ctx: click.Context, http_bind: str | None, tftp_bind: str | None) -> None:
    """Serve kickstarts, boot configs, callbacks and the admin API over HTTP, and TFTP."""
    from ..serve import serve as run

    s = svc(ctx, create=True)
    for value, what in ((http_bind, "--http"), (tftp_bind, "--tftp")):
        if value is not None:
            try:
                config_mod._bind(value)
            except ValueError as exc:
                raise InputError(f"{what}: {exc}") from None
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("tftpy").setLevel(logging.WARNING)
    run(s, http_bind or s.cfg.server.http_bind, tftp_bind or s.cfg.server.tftp_bind)



for command in (node, facts, render, check, rebuild, watch, runs, status, dhcp, media, db, audit, token):
    main.add_command(command)
