"""The HTTP listener of `serve`: it answers the boot storm's hottest request itself and gives every
other connection to waitress.

A `GET` of a per-MAC boot config that the cache answers (GRUB, pxelinux, iPXE) is answered here, in
one epoll thread: no waitress, no Flask, no worker thread. Every other request is left unread. The
listener only peeks at the request, and hands the connection and its socket over to waitress, which
then serves that connection as it always did. That covers a cache miss, a request not complete in
its first segment, a body, and anything unusual. It keeps the peer's address, and waitress keeps its
own limits and timeouts.

Why: waitress walks every open connection in Python on each turn of its loop and passes each request
to a worker thread. With 200 boot clients at once that capped a cached answer at ~3,000 requests/s
with a p99 near a second. Here the cost is one epoll wake-up, one peek, one dictionary lookup and one
send.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from email.utils import formatdate
from urllib.parse import unquote, unquote_to_bytes

from ..bootnames import mac_from_name
from ..domain.types import normalize_mac

log = logging.getLogger("provision.http")

MAX_HEAD = 8192  # a boot client's request is a few hundred bytes; a longer one goes to waitress
_PREFIXES = (("/boot/grub/", "grub"), ("/boot/pxelinux.cfg/", "pxelinux"))
_BODY_HEADERS = (b"transfer-encoding", b"expect", b"upgrade")


def boot_target(path: str, query: str) -> tuple[str | None, str]:
    """(mac, kind) of a per-MAC boot-config URL, as the Flask routes in boot.py read it; mac is None
    when the path is not one, or names no valid MAC."""
    for prefix, kind in _PREFIXES:
        if path.startswith(prefix):
            return mac_from_name(path[len(prefix):], kind), kind
    if path == "/boot/ipxe" and query.startswith("mac=") and "&" not in query:
        try:
            return normalize_mac(unquote(query[4:])), "ipxe"
        except ValueError:
            return None, "ipxe"
    return None, ""


def parse_head(head: bytes) -> tuple[str, str, bool, bool] | None:
    """(path, query, keep_alive, http10) of a plain `GET` without a body, or None for anything else
    (waitress then reads it and answers it, errors included)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None
    http10 = parts[2] == b"HTTP/1.0"
    keep = not http10
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[:1] in (b" ", b"\t") or name != name.strip():
            return None
        name, value = name.lower(), value.strip().lower()
        if name in _BODY_HEADERS or (name == b"content-length" and value != b"0"):
            return None
        if name == b"connection":
            tokens = {t.strip() for t in value.split(b",")}
            keep = False if b"close" in tokens else (True if b"keep-alive" in tokens else keep)
    target = parts[1]
    if not target.startswith(b"/") or b"#" in target:
        return None
    raw_path, _, query = target.partition(b"?")
    try:  # waitress gives Flask the path percent-decoded as latin-1 (PEP 3333), the query as sent
        return unquote_to_bytes(raw_path).decode("latin-1"), query.decode("ascii"), keep, http10
    except UnicodeDecodeError:
        return None


class _Conn:
    __slots__ = ("sock", "addr", "out", "keep", "last", "closing")

    def __init__(self, sock: socket.socket, addr) -> None:
        self.sock, self.addr, self.out, self.keep, self.closing = sock, addr, b"", True, False
        self.last = time.monotonic()


class Front:
    """Accepts on the public HTTP socket; see the module's docstring. `wsgi` is the waitress server
    (created on the same socket, but not accepting) that takes the connections handed over."""

    def __init__(self, listener: socket.socket, wsgi, bootcache, metrics, *, idle_timeout: float,
                 connection_limit: int) -> None:
        self.listener, self.wsgi, self.bootcache, self.metrics = listener, wsgi, bootcache, metrics
        self.idle_timeout, self.limit = idle_timeout, connection_limit
        self.conns: dict[int, _Conn] = {}
        self.answered = self.handed = 0
        self._ep = select.epoll()
        self._stop = threading.Event()
        self._accepting = False
        self._date, self._date_at = b"", 0.0

    # -- the loop --------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        self.listener.setblocking(False)
        lfd = self.listener.fileno()
        next_sweep = time.monotonic() + 1.0
        try:
            while not self._stop.is_set():
                self._gate()
                for fd, events in self._ep.poll(0.5):
                    if fd == lfd:
                        self._accept()
                    elif (conn := self.conns.get(fd)) is not None:
                        self._event(fd, conn, events)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + 1.0
                    self._sweep()
        finally:
            for fd in list(self.conns):
                self._close(fd)
            self._ep.close()

    def stop(self) -> None:
        self._stop.set()

    def _open(self) -> int:
        return len(self.conns) + len(self.wsgi.active_channels)

    def _gate(self) -> None:
        """Stop accepting at the connection limit (more wait in the backlog), as waitress does."""
        want = self._open() < self.limit
        if want != self._accepting:
            if want:
                self._ep.register(self.listener.fileno(), select.EPOLLIN)
            else:
                self._ep.unregister(self.listener.fileno())
            self._accepting = want

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave the rest in the backlog for now
                log.warning("accept: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns[sock.fileno()] = _Conn(sock, addr)
            self._ep.register(sock.fileno(), select.EPOLLIN)

    def _event(self, fd: int, conn: _Conn, events: int) -> None:
        conn.last = time.monotonic()
        if conn.out:
            self._flush(fd, conn)
        elif conn.closing:  # our answer is out and we shut our side: wait for the client's close
            try:
                if not conn.sock.recv(65536):
                    self._close(fd)
            except BlockingIOError:
                pass
            except OSError:
                self._close(fd)
        elif events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            self._request(fd, conn)

    def _request(self, fd: int, conn: _Conn) -> None:
        try:
            head = conn.sock.recv(MAX_HEAD, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            self._close(fd)
            return
        if not head:
            self._close(fd)
            return
        end = head.find(b"\r\n\r\n")
        parsed = parse_head(head[:end]) if end > 0 else None
        data = kind = None
        if parsed is not None:
            mac, kind = boot_target(parsed[0], parsed[1])
            if mac is not None:  # a miss (not rendered yet, or changed a moment ago) renders in waitress
                data = self.bootcache.cached(kind, mac)
        if data is None:
            self._hand_over(fd, conn)
            return
        conn.sock.recv(end + 4)  # exactly the request we peeked at; a pipelined next one stays
        conn.keep = parsed[2]
        self.answered += 1
        self.metrics.renders.labels(kind).inc()
        self.metrics.http_requests.labels(f"boot.{kind}", "200").inc()
        conn.out = self._response(data, parsed[2], parsed[3])
        self._flush(fd, conn)

    def _response(self, data: bytes, keep: bool, http10: bool) -> bytes:
        now = time.time()
        if now - self._date_at >= 1.0:
            self._date, self._date_at = formatdate(now, usegmt=True).encode(), now
        connection = b"Connection: Keep-Alive\r\n" if keep and http10 else (b"" if keep else b"Connection: close\r\n")
        return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Date: %s\r\nServer: provision\r\n%s\r\n" % (len(data), self._date, connection)) + data

    def _flush(self, fd: int, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(fd)
            return
        conn.out = conn.out[sent:]
        if conn.out:
            self._ep.modify(fd, select.EPOLLOUT)
            return
        self._ep.modify(fd, select.EPOLLIN)
        if not conn.keep:  # half-close, then read until the client closes: an unread byte would reset
            conn.closing = True  # the connection and could cut our answer short
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(fd)

    def _hand_over(self, fd: int, conn: _Conn) -> None:
        """Give the connection, unread, to waitress: its loop thread makes the channel."""
        self._ep.unregister(fd)
        del self.conns[fd]
        self.handed += 1
        wsgi, sock, addr = self.wsgi, conn.sock, conn.addr

        def adopt() -> None:
            try:
                wsgi.channel_class(wsgi, sock, addr, wsgi.adj, map=wsgi._map)
            except OSError:
                sock.close()

        wsgi.trigger.pull_trigger(adopt)

    def _sweep(self) -> None:
        idle_since = time.monotonic() - self.idle_timeout
        for fd in [fd for fd, c in self.conns.items() if c.last < idle_since]:
            self._close(fd)

    def _close(self, fd: int) -> None:
        conn = self.conns.pop(fd, None)
        if conn is None:
            return
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass
        conn.sock.close()
