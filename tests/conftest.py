"""Shared fixtures: a config in a temp dir, the example inventory, and a real `provision serve`
subprocess on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from provision import config as config_mod
from provision import services

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "inventory.yaml"


def wait_until(what: str, check, timeout: float = 60.0) -> None:
    """Until `check()` is true (asked every 20 ms), or fail naming `what` after `timeout` seconds."""
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if check():
            done.set()
            break
        done.wait(0.02)
    assert done.is_set(), what


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp: Path, http_port: int = 8080, tftp_port: int = 6969, extra: str = "",
                 server_extra: str = "", templates: bool = True) -> Path:
    """A config with everything under `tmp`; `templates=False` leaves [paths] templates out (an
    installed provision uses the ones it ships)."""
    (tmp / "bootfiles").mkdir(exist_ok=True)
    (tmp / "media").mkdir(exist_ok=True)
    cfg = tmp / "provision.toml"
    cfg.write_text(f"""
[server]
http_bind = "127.0.0.1:{http_port}"
tftp_bind = "127.0.0.1:{tftp_port}"
public_url = "http://127.0.0.1:{http_port}"
db_url = "sqlite:///{tmp}/provision.db"
admin_token_file = "{tmp}/admin.token"
secret_key_file = "{tmp}/secret.key"
{server_extra}

[paths]
state_dir = "{tmp}/var"
bootfiles = "{tmp}/bootfiles"
media = "{tmp}/media"
{f'templates = "{REPO}"' if templates else ""}
{extra}
""")
    return cfg


def run_cli(*args: str, config: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "provision"] + (["--config", str(config)] if config else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=120)


@pytest.fixture(scope="session")
def pg():
    """One PostgreSQL server for the session; each test asks it for a fresh database."""
    from .pg import Postgres

    server = Postgres()
    yield server
    server.stop()


def use_db(cfg: Path, url: str) -> Path:
    """Point a written config at another database URL."""
    text = cfg.read_text()
    start = text.index('db_url = "')
    end = text.index('"', start + len('db_url = "'))
    cfg.write_text(text[:start] + f'db_url = "{url}"' + text[end + 1:])
    return cfg


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def svc(cfg_path: Path):
    s = services.build(config_mod.load(cfg_path))
    yield s
    s.close()


@dataclass
class Server:
    root: Path
    config: Path
    http: str
    tftp_port: int
    proc: subprocess.Popen
    svc: services.Services

    @property
    def token(self) -> str:
        return (self.root / "admin.token").read_text().strip()

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.http + path, timeout=10, **kw)

    def api(self, path: str, method: str = "GET", **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} | kw.pop("headers", {})
        return requests.request(method, self.http + "/api/v1" + path, headers=headers, timeout=10, **kw)


@pytest.fixture
def server(tmp_path: Path):
    # collector uploads in these tests come from 127.0.0.1, not from the example nodes' addresses
    # (the installer's kickstart fetch too: only 127.0.0.1, so a fetch from 127.0.0.2 is another machine's)
    yield from start_server(tmp_path, server_extra='collect_sources = ["127.0.0.0/8"]\ninstall_sources = ["127.0.0.1/32"]\n')


def start_server(tmp_path: Path, extra: str = "", tftp_host: str = "127.0.0.1", server_extra: str = ""):
    """A real `provision serve` on free loopback ports (a generator: yields, then stops it)."""
    http_port, tftp_port = free_port(), free_port(socket.SOCK_DGRAM)
    cfg = write_config(tmp_path, http_port, tftp_port, extra=extra, server_extra=server_extra)
    if tftp_host != "127.0.0.1":
        cfg.write_text(cfg.read_text().replace(f'tftp_bind = "127.0.0.1:{tftp_port}"',
                                               f'tftp_bind = "[{tftp_host}]:{tftp_port}"'))
    svc = services.build(config_mod.load(cfg))
    svc.admin_token()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "provision", "--config", str(cfg), "serve"],
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url + "/healthz", timeout=1).ok:
                break
        except requests.RequestException:  # refused, or slow to answer while it starts on a loaded machine
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("provision serve did not start:\n" + (tmp_path / "serve.log").read_text())
        time.sleep(0.1)
    try:
        yield Server(tmp_path, cfg, url, tftp_port, proc, svc)
    finally:  # also when the generator is closed early (gen.close() raises GeneratorExit at the yield)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        svc.close()
        log.close()


def ui_login(session, base: str, token: str, nxt: str = "/", **kw):
    """Log in to the console as a browser does: the login page's CSRF token, then the form."""
    import re

    page = session.get(base + "/login", timeout=10, verify=kw.get("verify", True)).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    # a browser sends the page it came from (over HTTPS flask-wtf requires it: the same origin)
    return session.post(base + "/login", data={"token": token, "next": nxt, "csrf_token": csrf}, timeout=10,
                        headers={"Referer": base + "/login"}, **kw)
