"""A TFTP pump process: `python -m provision.tftp.pump <control fd> <retries>`. It is handed
connected session sockets and open files by the main loop (SCM_RIGHTS) and runs each transfer in a
child process of its own, with the C send loop (blocking.py), as tftpd-hpa forks one per transfer;
it never opens a file or resolves a name itself, and exits when the main process closes the
control socket. The main loop's side of it is pumps.py."""

from __future__ import annotations

import os
import select
import signal
import socket
import sys

from . import blocking
from .engine import TftpService
from .pumps import HANDOFF


class PumpService(TftpService):
    """The engine's loop in a pump: its only inputs are the control socket and its children's ends."""

    def __init__(self, retries: int) -> None:
        super().__init__(None, retries=retries)
        self._control: socket.socket | None = None
        self._children: dict[int, tuple[int, bytes]] = {}  # pidfd -> (child pid, the transfer's peer)

    def serve_adopted(self, control: socket.socket) -> None:
        """A pump process's loop: transfers arrive over `control` (descriptors passed with
        SCM_RIGHTS), each end is reported back on it."""
        self._control = control
        control.send(b"r")  # ready: the main process waits for this before it says it serves
        control.setblocking(False)
        self._handlers[control.fileno()] = self._on_handoff
        self._loop()

    def _on_handoff(self) -> None:
        assert self._control is not None, "a pump's loop"
        for _ in range(64):
            try:
                msg, fds, _flags, _addr = socket.recv_fds(self._control, 4096, 2)
            except (BlockingIOError, InterruptedError):
                return
            if not msg:  # the main process is gone
                self._stop.set()
                return
            if len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                continue
            blksize, timeout, size, first_len = HANDOFF.unpack_from(msg)
            first = msg[HANDOFF.size:HANDOFF.size + first_len]
            peer = msg[HANDOFF.size + first_len:]
            self._fork_transfer(socket.socket(fileno=fds[0]), fds[1], size, blksize, timeout, first, peer)

    def _fork_transfer(self, sock: socket.socket, fd: int, size: int, blksize: int, timeout: float,
                       first: bytes, peer: bytes) -> None:
        """A pump's transfer, in a child process of its own; its end is reported when it exits
        (its pidfd becomes readable in this loop). A pump is single-threaded, so forking is safe."""
        pid = os.fork()
        if pid == 0:  # the child: the transfer, then out without running anything of the pump's
            code = 1
            try:
                self._poll.close()
                if self._control is not None:
                    self._control.close()
                for other in self._children:  # the other transfers' pidfds
                    os.close(other)
                code = 0 if blocking.send_file(sock, fd, size, blksize, timeout, self.retries, first) else 1
            finally:
                os._exit(code)
        sock.close()
        os.close(fd)
        pidfd = os.pidfd_open(pid)
        self._children[pidfd] = (pid, peer)
        self._handlers[pidfd] = lambda: self._reap(pidfd)
        self._poll.register(pidfd, select.EPOLLIN)

    def _reap(self, pidfd: int) -> None:
        pid, peer = self._children.pop(pidfd)
        self._handlers.pop(pidfd, None)
        self._poll.unregister(pidfd)
        os.close(pidfd)
        os.waitpid(pid, 0)
        if self._control is not None:  # one message per end, naming the transfer's peer
            try:
                self._control.send(b"e" + peer)
            except OSError:
                self._stop.set()

    def _end_children(self) -> None:
        for pidfd, (pid, _peer) in self._children.items():  # a pump that stops ends its transfers
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
            os.close(pidfd)
        self._children.clear()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops us by closing the socket
    control = socket.socket(fileno=int(sys.argv[1]))
    PumpService(retries=int(sys.argv[2])).serve_adopted(control)


if __name__ == "__main__":
    main()
