"""Start tests/fakes/redfish_bmc.py (sushy-tools' emulator) on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import requests

from .conftest import free_port

SYSTEMS = ("node1", "rejects", "ignores", "ilo5", "idrac9", "supermicro", "xcc")  # fakes/redfish_bmc.py: who does what


@dataclass
class RedfishSim:
    url: str
    proc: subprocess.Popen
    uuids: dict[str, str]
    password: str

    def system(self, name: str) -> dict:
        """The system's resource as the BMC shows it (a raw GET, not through sushy)."""
        r = requests.get(f"{self.url}/redfish/v1/Systems/{self.uuids[name]}", auth=("admin", self.password), timeout=10)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_redfish(tmp: Path, password: str = "redfish-pw", post_refusals: int = 2) -> RedfishSim:
    port = free_port()
    uuids = {name: str(uuid.uuid4()) for name in SYSTEMS}
    (tmp / "htpasswd").write_text(f"admin:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n")
    (tmp / "state").mkdir(exist_ok=True)
    systems = [{"uuid": u, "name": n, "power_state": "Off", "nics": [{"mac": f"52:54:00:aa:bb:0{i}", "ip": "192.0.2.1"}]}
               for i, (n, u) in enumerate(uuids.items())]
    cfg = tmp / "emulator.conf"
    cfg.write_text(f"""SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'
SUSHY_EMULATOR_LISTEN_PORT = {port}
SUSHY_EMULATOR_FAKE_DRIVER = True
SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}
SUSHY_EMULATOR_AUTH_FILE = '{tmp / "htpasswd"}'
SUSHY_EMULATOR_STATE_DIR = '{tmp / "state"}'
PROVISION_POST_REFUSALS = {post_refusals}
""")
    log = open(tmp / "emulator.log", "w")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "fakes" / "redfish_bmc.py"), "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/redfish/v1/", timeout=2)
            break
        except requests.RequestException as exc:  # refused, or slow to answer while it starts
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the Redfish emulator did not start:\n" + (tmp / "emulator.log").read_text()) from exc
            time.sleep(0.1)
    return RedfishSim(url, proc, uuids, password)
