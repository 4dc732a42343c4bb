"""Start OpenIPMI `ipmi_sim` BMCs on loopback ports, each with a chassis_control program that
records power and boot-device calls (the log is the truth tests assert on)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CHASSIS = Path(__file__).parent / "fakes" / "chassis_control.sh"


@dataclass
class SimBmc:
    dir: Path
    port: int
    proc: subprocess.Popen
    password: str

    def calls(self) -> list[str]:
        log = self.dir / "calls.log"
        out = []
        for line in log.read_text().splitlines() if log.exists() else []:
            words = line.split()[1:]  # drop the timestamp, then an optional device argument
            while words and words[0] not in ("get", "set"):
                words.pop(0)
            out.append(" ".join(words))
        return out

    def sets(self) -> list[str]:
        """Only the state-changing calls, in order: e.g. ['set boot pxe', 'set power 0', 'set power 1']."""
        return [c for c in self.calls() if c.startswith("set ")]

    def set_power(self, on: bool) -> None:
        (self.dir / "power").write_text("1\n" if on else "0\n")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_bmc(root: Path, name: str, password: str = "password", chassis: bool = True) -> SimBmc:
    d = root / f"bmc-{name}"
    (d / "state").mkdir(parents=True, exist_ok=True)
    prog = d / "chassis_control.sh"
    shutil.copy(CHASSIS, prog)
    port = free_udp_port()
    (d / "lan.conf").write_text(f"""name "{name}"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
{f'  chassis_control "{prog}"' if chassis else ''}
  user 2 true "admin" "{password}" admin 10 none md2 md5 straight
""")
    (d / "bmc.emu").write_text("mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
                               "mc_enable 0x20\n")
    exe = shutil.which("ipmi_sim") or "/usr/bin/ipmi_sim"
    proc = subprocess.Popen([exe, "-c", str(d / "lan.conf"), "-f", str(d / "bmc.emu"), "-s", str(d / "state"), "-n"],
                            stdout=open(d / "sim.log", "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    time.sleep(0.3)
    if proc.poll() is not None:
        raise RuntimeError(f"ipmi_sim did not start: {(d / 'sim.log').read_text()}")
    return SimBmc(d, port, proc, password)
