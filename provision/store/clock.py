"""Naive UTC timestamps, as stored."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def db_utcnow(conn) -> datetime:
    """The database server's clock, as naive UTC. Run leases are written by one `serve` and judged
    by another: each process's own wall clock would let skew between two hosts hand a healthy run to
    a second holder, so every lease is set and compared on this one clock (on SQLite, a file on one
    host, it is that host's clock)."""
    from sqlalchemy import func, select

    if conn.dialect.name == "postgresql":
        return conn.execute(select(func.timezone("UTC", func.now()))).scalar_one()
    text = conn.execute(select(func.strftime("%Y-%m-%d %H:%M:%f", "now"))).scalar_one()
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
