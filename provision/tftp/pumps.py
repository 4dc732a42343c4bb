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
READY_TIMEOUT = 30.0  # a pump's interpreter starts in about 0.1 s; this is for a machine under load


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
        return cls(proc, mine)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the pump has started (it sends one byte): a server that says it serves must not
        have its first transfers wait for its pumps' interpreters to start. A pump that does not
        start in time is not used (big files then go from the main loop)."""
        self.control.settimeout(timeout)
        try:
            ready = self.control.recv(16) == b"r"
        except OSError:  # TimeoutError included
            ready = False
        self.control.setblocking(False)
        if not ready:
            log.error("tftp pump %s did not start (%s); big files go from the main loop", self.pid, self.proc.poll())
            self.alive = False

    def reports(self) -> list[tuple[str, int]]:
        """The peers (host, port) of the transfers that ended since the last call, one message each;
        at end-of-file (the pump exited) `alive` turns False, logged once."""
        ended = []
        while self.alive:
            try:
                data = self.control.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                log.error("tftp pump %s exited (%s); its transfers are lost, the clients retry", self.pid,
                          self.proc.poll())
                self.alive, self.in_flight = False, 0
                break
            host, _, port = data[1:].decode(errors="replace").rpartition(":")
            self.in_flight = max(0, self.in_flight - 1)
            if port.isascii() and port.isdigit():
                ended.append((host, int(port)))
        return ended

    def stop(self) -> None:
        self.alive = False
        self.control.close()  # the pump sees end-of-file and exits (a second stop is harmless)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
