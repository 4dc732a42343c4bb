"""The connection gate in front of waitress: what waitress cannot bound by itself.

waitress reads request heads asynchronously and only gives complete requests to its worker
threads, so slow clients cost it a socket, not a thread. What it has no setting for is a deadline
on a request head (its `channel_timeout` counts inactivity: one byte every few seconds keeps a
connection forever) and a limit per source address (its `connection_limit` is global: 400 slow
connections from one host lock every node out). The gate adds both, and nothing else:

- it accepts on the public socket, refuses (closes) a connection beyond `per_source` open
  connections from that address, or beyond `limit` open in all (then it stops accepting and the
  kernel's backlog waits, as waitress does);
- it waits, without reading, until the connection's first request head is complete (a peek finds
  the blank line, or `max_head` bytes are there for waitress to refuse), closing it if that takes
  longer than `head_timeout` seconds;
- it then gives the connection to waitress, which is handed the gate's `GatedListener`s through its
  public `sockets=` argument: sockets whose accept() returns the connections the gate let through.
  Every byte of every request is read, parsed and answered by waitress.

waitress accepts one connection per listening socket per turn of its loop, and under load a turn
takes 10-20 ms: 200 nodes connecting at once waited up to 3.7 s for their first request to be read
(0.5% of a 200-connection wrk run past its 2 s timeout). So the gate hands waitress `lanes`
listeners (16 by default), each readable when a connection is ready for it: it takes up to 16 a
turn, and the same 200 are in within a few turns.

A connection counts against its source until waitress closes it. Addresses in `exempt` (the
trusted reverse proxies, whose connections carry many clients) have no per-source limit. Nothing
a client sends can stop the gate's loop: a failure on one connection closes that connection."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import select
import socket
import threading
import time
from collections import Counter, deque

log = logging.getLogger("provision.http")


class _Handed(socket.socket):
    """An accepted connection as waitress gets it: closing it gives its source's slot back."""

    def __init__(self, gate: Gate, source: str, family, type_, proto, fileno: int) -> None:
        super().__init__(family, type_, proto, fileno)
        self._gate, self._source = gate, source

    def close(self) -> None:
        gate, self._gate = self._gate, None  # type: ignore[assignment]  # closed once
        super().close()
        if gate is not None:
            gate.release(self._source)


class GatedListener(socket.socket):
    """What waitress listens on: the public socket's address and options, readable when the gate
    has a connection ready for this lane, and accept() returns one (BlockingIOError when none is)."""

    def __init__(self, gate: Gate, public: socket.socket, lane: int) -> None:
        super().__init__(public.family, public.type, public.proto, os.dup(public.fileno()))
        self._gate, self._lane = gate, lane

    def fileno(self) -> int:
        return self._gate.ready_fd(self._lane)

    def listen(self, backlog: int = 0) -> None:  # the gate's socket listens already
        pass

    def setblocking(self, flag: bool) -> None:  # never blocks: see accept
        pass

    def accept(self):
        return self._gate.take(self._lane)


class Gate:
    def __init__(self, listener: socket.socket, *, limit: int, per_source: int, head_timeout: float,
                 max_head: int = 65536, exempt=(), lanes: int = 16) -> None:
        self.listener, self.limit, self.per_source = listener, limit, per_source
        self.head_timeout, self.max_head = head_timeout, max_head
        self.exempt = [ipaddress.ip_network(n) for n in exempt]
        self.refused: Counter[str] = Counter()  # reason -> connections closed by the gate
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()  # source -> connections open (waiting here or in waitress)
        self._total = 0
        self._waiting: dict[int, tuple[socket.socket, tuple, float]] = {}  # fd -> (sock, addr, accepted at)
        self._ready: deque[tuple[socket.socket, tuple]] = deque()
        # a byte per ready connection, in its lane's pipe (round robin); any lane's take() pops the
        # oldest ready connection: bytes in all pipes == connections ready, always
        self._lanes = [os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC) for _ in range(max(1, lanes))]
        self._next_lane = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ep = select.epoll()
        self._stop = threading.Event()
        self._accepting = False

    def ready_fd(self, lane: int = 0) -> int:
        return self._lanes[lane][0]

    def listening_sockets(self) -> list[GatedListener]:
        return [GatedListener(self, self.listener, lane) for lane in range(len(self._lanes))]

    # -- waitress's side (its loop thread) ----------------------------------------------------------
    def take(self, lane: int = 0):
        try:
            os.read(self._lanes[lane][0], 1)
            sock, addr = self._ready.popleft()
        except (BlockingIOError, IndexError):
            raise BlockingIOError(errno.EAGAIN, "no connection is ready") from None
        fd = sock.detach()
        return _Handed(self, addr[0], sock.family, sock.type, sock.proto, fd), addr

    def release(self, source: str) -> None:
        with self._lock:
            self._drop(source)
        self._wake()

    def _drop(self, source: str) -> None:
        self._total -= 1
        self._open[source] -= 1
        if self._open[source] <= 0:
            del self._open[source]

    # -- the loop ------------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        self.listener.setblocking(False)
        self._ep.register(self._wake_r, select.EPOLLIN)
        next_sweep = time.monotonic() + 0.5
        while not self._stop.is_set():
            try:
                self._turn()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + 0.5
                    self._sweep()
            except Exception:  # a bug here must not end HTTP: log it, and go on
                log.exception("http gate: unexpected error; serving on")
                time.sleep(0.01)
        for fd in list(self._waiting):
            self._close(fd)
        self._ep.close()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except (BlockingIOError, OSError):
            pass

    def _turn(self) -> None:
        with self._lock:
            want = self._total < self.limit
        if want != self._accepting:
            if want:
                self._ep.register(self.listener.fileno(), select.EPOLLIN)
            else:
                self._ep.unregister(self.listener.fileno())
            self._accepting = want
        lfd = self.listener.fileno()
        for fd, events in self._ep.poll(0.5):
            if fd == lfd:
                self._accept()
            elif fd == self._wake_r:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            elif fd in self._waiting:
                self._guarded(fd, events)

    def _exempt(self, source: str) -> bool:
        try:
            ip = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(ip in net for net in self.exempt)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave the rest in the backlog for now
                log.warning("accept: %s", exc)
                return
            source = addr[0]
            with self._lock:
                over = self._total >= self.limit or (
                    self._open[source] >= self.per_source and not self._exempt(source))
                if not over:
                    self._total += 1
                    self._open[source] += 1
            if over:
                self.refused["per-source"] += 1
                sock.close()
                continue
            sock.setblocking(False)
            self._waiting[sock.fileno()] = (sock, addr, time.monotonic())
            self._ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET)
            self._guarded(sock.fileno(), 0)  # the head may be there already

    def _guarded(self, fd: int, events: int) -> None:
        try:
            self._check(fd, events)
        except Exception:
            log.exception("http gate: connection from %s failed; closed", self._waiting[fd][1][0])
            if fd in self._waiting:
                self._close(fd)

    def _check(self, fd: int, events: int) -> None:
        sock, addr, _at = self._waiting[fd]
        try:
            head = sock.recv(self.max_head, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            self._close(fd)
            return
        if not head:
            self._close(fd)
            return
        if b"\r\n\r\n" in head or b"\n\n" in head or len(head) >= self.max_head:
            self._ep.unregister(fd)
            del self._waiting[fd]
            self._ready.append((sock, addr))
            os.write(self._lanes[self._next_lane][1], b"r")
            self._next_lane = (self._next_lane + 1) % len(self._lanes)
        elif events & (select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
            self._close(fd)  # gone before its head was complete

    def _sweep(self) -> None:
        late = time.monotonic() - self.head_timeout
        for fd in [fd for fd, (_s, _a, at) in self._waiting.items() if at < late]:
            self.refused["head-timeout"] += 1
            self._close(fd)

    def _close(self, fd: int) -> None:
        sock, addr, _at = self._waiting.pop(fd)
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass
        sock.close()
        self.release(addr[0])
