"""The main loop's side of the pump processes (pump.py runs the other side): spawning them, handing
them a transfer (its connected socket and open file, over SCM_RIGHTS) and counting what they run."""

from __future__ import annotations

import logging
import socket
import struct
import subprocess
import sys

log = logging.getLogger("provision.tftp")
HANDOFF = struct.Struct("!IdQH")  # blksize, timeout, size, length of the first packet (OACK or none)
HANDOFF_BLOCKS = 64  # files of at least this many blocks go to a pump process


class Pump:
    """A pump process as the main loop sees it: its control socket and how many transfers it has."""

    def __init__(self, proc: subprocess.Popen, control: socket.socket) -> None:
        self.proc, self.control, self.pid = proc, control, proc.pid
        self.in_flight, self.alive = 0, True

    @classmethod
    def spawn(cls, retries: int) -> Pump:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = subprocess.Popen([sys.executable, "-m", "provision.tftp.pump", str(theirs.fileno()), str(retries)],
                                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        mine.setblocking(False)
        return cls(proc, mine)

    def on_report(self) -> None:
        try:
            data = self.control.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            log.error("tftp pump %s exited (%s); its transfers are lost, the clients retry", self.pid,
                      self.proc.poll())
            self.alive, self.in_flight = False, 0
            return
        self.in_flight = max(0, self.in_flight - len(data))

    def stop(self) -> None:
        self.alive = False
        self.control.close()  # the pump sees end-of-file and exits (a second stop is harmless)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
