"""A TFTP pump process: `python -m provision.tftp.pump <control fd> <retries>`. It is handed
connected session sockets and open files by the main loop (SCM_RIGHTS) and runs the transfers
with the same engine; it never opens a file or resolves a name itself, and exits when the main
process closes the control socket."""

from __future__ import annotations

import signal
import socket
import sys

from .engine import TftpService


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops us by closing the socket
    control = socket.socket(fileno=int(sys.argv[1]))
    TftpService(None, retries=int(sys.argv[2])).serve_adopted(control)


if __name__ == "__main__":
    main()
