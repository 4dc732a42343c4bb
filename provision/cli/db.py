"""`provision db`: the schema's version and upgrade, backup and restore (SQLite; PostgreSQL has
pg_dump and pg_restore, docs/install.md)."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import click

from ..errors import Conflict, InputError
from ..store import Store
from ..store import schema as schema_mod
from ..store.tables import make_url_safe
from .common import cfg


@click.group()
def db() -> None:
    """The database: version, upgrade, backup, restore."""


def _open(ctx: click.Context) -> Store:
    url = cfg(ctx).server.db_url
    return Store(url, create=False, check=False)


def _sqlite_path(ctx: click.Context, verb: str) -> Path:
    url = cfg(ctx).server.db_url
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        raise InputError(f"db {verb}: db_url {make_url_safe(url)} is not a SQLite file; for PostgreSQL use "
                         "pg_dump / pg_restore (docs/install.md)")
    return Path(url.removeprefix("sqlite:///"))


@db.command("version")
@click.pass_context
def version(ctx: click.Context) -> None:
    """The database's schema revision and the one this provision needs."""
    store = _open(ctx)
    try:
        with store.engine.connect() as conn:
            current = schema_mod.revision(conn)
    finally:
        store.close()
    click.echo(f"database {current or 'empty'}; this provision needs {schema_mod.head()}")


@db.command("upgrade")
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Bring the database's schema to this provision's (back it up first: provision db backup)."""
    store = _open(ctx)
    try:
        before, after = schema_mod.upgrade(store.engine)
    finally:
        store.close()
    click.echo(f"schema at {after}" + (f" (was {before})" if before != after else " already"))


def _copy(src: Path, dst: Path) -> None:
    """SQLite's online backup of `src` into a new file `dst`, written beside it and renamed into
    place: a reader never finds half a copy."""
    part = dst.with_name(dst.name + ".part")
    part.unlink(missing_ok=True)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as source, sqlite3.connect(part) as target:
            source.backup(target)
        target.close()
        os.replace(part, dst)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
def backup(ctx: click.Context, file: str) -> None:
    """Copy the SQLite database to FILE while serve runs (SQLite's online backup)."""
    src, dst = _sqlite_path(ctx, "backup"), Path(file)
    if not src.is_file():
        raise InputError(f"db backup: no database at {src}")
    if dst.exists():
        raise InputError(f"db backup: {dst} exists; give a new file name")
    if not dst.parent.is_dir():
        raise InputError(f"db backup: {dst.parent} is not a directory")
    _copy(src, dst)
    click.echo(f"backed up {src} to {dst} ({dst.stat().st_size} bytes)")


@db.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="do not ask")
@click.pass_context
def restore(ctx: click.Context, file: str, yes: bool) -> None:
    """Replace the SQLite database with a backup. The database it replaces is kept beside it
    (provision.db.before-restore-<time>). Stop serve first."""
    dst, src = _sqlite_path(ctx, "restore"), Path(file)
    try:
        with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise InputError(f"db restore: {src} is not a SQLite database ({exc})") from None
    if "nodes" not in tables:
        raise InputError(f"db restore: {src} holds no provision data")
    if dst.is_file():
        store = Store(cfg(ctx).server.db_url, create=False, check=False)
        try:
            live = [r for r in store.rebuilds() if not r.finished]
        finally:
            store.close()
        if live:
            raise Conflict(f"db restore: rebuild {live[0].id} has not ended ({live[0].status}); nothing was restored")
    if not yes:
        click.confirm(f"Replace {dst} with {src}?", abort=True)
    kept = None
    if dst.is_file():
        kept = dst.with_name(f"{dst.name}.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        _copy(dst, kept)
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):  # the replaced database's journal belongs to it, not to the backup
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    _copy(src, dst)
    click.echo(f"restored {dst} from {src}" + (f"; the database it replaced is {kept}" if kept else ""))
    click.echo("if it is older than this provision: provision db upgrade")
