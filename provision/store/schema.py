"""The schema's version, by Alembic (store/migrations/): a new database is created at the newest
schema and stamped so; an existing one must be at the newest, or `provision db upgrade` brings it
there. A database made before provision had migrations (no version recorded) counts as the first
release's and is upgraded from there (migration 0002 adds what it lacks)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect

from ..errors import InputError

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class NoDatabase(InputError):
    """The database holds no provision schema, and this command does not create one."""


class OldSchema(InputError):
    """The database's schema is older than this provision's: `provision db upgrade`."""


def _alembic(conn: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    rev = ScriptDirectory.from_config(_alembic(None)).get_current_head()  # type: ignore[arg-type]
    assert rev is not None
    return rev


def revision(conn: Connection) -> str | None:
    """The database's schema revision; "0001" for one made before migrations; None when empty."""
    tables = set(inspect(conn).get_table_names())
    if "nodes" not in tables:
        return None
    return MigrationContext.configure(conn).get_current_revision() or "0001"


def ensure_schema(engine: Engine, metadata: MetaData, *, create: bool = True) -> None:
    """Create the schema in an empty database (when `create`), else check it is the newest."""
    with engine.begin() as conn:
        current = revision(conn)
        if current is None:
            if not create:
                raise NoDatabase("holds no provision data")
            metadata.create_all(conn)
            command.stamp(_alembic(conn), "head")
            return
    if current != head():
        raise OldSchema(f"its schema is revision {current}, this provision needs {head()}: "
                        "run `provision db upgrade` (back it up first: `provision db backup FILE`)")


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the newest schema: (its revision before, after)."""
    with engine.begin() as conn:
        before = revision(conn)
        if before is None:
            raise NoDatabase("holds no provision data: nothing to upgrade")
        cfg = _alembic(conn)
        if MigrationContext.configure(conn).get_current_revision() is None:
            command.stamp(cfg, "0001")  # made before migrations: the first release's schema, or later
        command.upgrade(cfg, "head")
    return before, head()
