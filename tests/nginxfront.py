"""A real nginx in front of `provision serve`, configured from the shipped docs/nginx/provision.conf
(only its placeholders filled in): what the production deployment runs (docs/nginx.md)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "docs" / "nginx" / "provision.conf"


@dataclass
class Front:
    proc: subprocess.Popen
    http_port: int
    https_port: int
    dir: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(directory: Path, upstream: str, media: Path, cert: Path, key: Path,
                http_port: int | None = None, https_port: int | None = None, per_ip: int = 64,
                boot_export: Path | None = None, access_log: bool = True) -> Front:
    """nginx's main configuration is what a distribution ships (a worker per core), with the site
    file included; `access_log` off for a benchmark beside a peer that logs nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tmp").mkdir(exist_ok=True)
    http_port, https_port = http_port or _free_port(), https_port or _free_port()
    site = CONF.read_text()
    for name, value in (("HTTP_LISTEN", f"127.0.0.1:{http_port}"), ("HTTPS_LISTEN", f"127.0.0.1:{https_port}"),
                        ("SERVER_NAME", "127.0.0.1"), ("CERT", str(cert)), ("KEY", str(key)), ("UPSTREAM", upstream),
                        ("MEDIA", str(media)), ("CACHE", str(directory / "cache")), ("TMP", str(directory / "tmp")),
                        ("PER_IP", str(per_ip)), ("BOOT_EXPORT", str(boot_export or directory / "no-export"))):
        site = site.replace(f"@{name}@", value)
    assert not re.search(r"@[A-Z_]+@", site), "a placeholder of docs/nginx/provision.conf is not filled"
    (directory / "provision.conf").write_text(site)
    user = "user root;" if os.geteuid() == 0 else ""
    log = f"access_log {directory}/access.log;" if access_log else "access_log off;"
    (directory / "nginx.conf").write_text(f"""daemon off; worker_processes auto; {user}
pid {directory}/nginx.pid; error_log {directory}/error.log;
events {{ worker_connections 4096; }}
http {{ {log} include {directory}/provision.conf; }}
""")
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    test = subprocess.run([binary, "-t", "-c", str(directory / "nginx.conf"), "-e", str(directory / "error.log")],
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    proc = subprocess.Popen([binary, "-c", str(directory / "nginx.conf"), "-e", str(directory / "error.log")])
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", http_port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (directory / "error.log").read_text()
            time.sleep(0.05)
    return Front(proc, http_port, https_port, directory)
