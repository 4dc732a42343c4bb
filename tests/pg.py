"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, a cluster in a temp
dir owned by an unprivileged user (`postgres` when the tests run as root, else the caller), on a
free loopback port, stopped at the end. `make test` installs the package."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .conftest import free_port


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Postgres:
    def __init__(self) -> None:
        # not under pytest's tmp dir: that is private to root, and the server runs as `postgres`
        root = self.root = Path(tempfile.mkdtemp(prefix="provision-pg-"))
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries not found: `make test` installs Debian's postgresql")
        self.bin, self.dir, self.port = bindir, root / "pgdata", free_port()
        self.sock = root / "pgsock"
        self.sock.mkdir(parents=True, exist_ok=True)
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(root, "postgres")
            shutil.chown(self.sock, "postgres")
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "provision", "--no-sync")
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(root / "pg.log"), "-w", "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        self.n = 0

    def _run(self, tool: str, *args: str) -> None:
        res = subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{tool} failed: {res.stderr or res.stdout}")

    def new_database(self) -> str:
        """A fresh, empty database's SQLAlchemy URL."""
        self.n += 1
        name = f"t{self.n}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "provision", name)
        return f"postgresql+psycopg://provision@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
