"""The HTTP listener of `serve`: it answers the boot storm's hottest requests itself and gives every
other connection to waitress.

A `GET` of a per-MAC boot config that the cache answers (GRUB, pxelinux, iPXE) is answered here, in
one epoll thread: no waitress, no Flask, no worker thread. So is an installer's kickstart fetch when
the cache knows its build token and every MAC it sends is the node's own; the fetch is recorded
first, many fetches to one commit (`recorder.Recorder`). So is a file under /media/, whole or one range, sent
by sendfile(2) with the headers Flask would send (mediafiles.py); the sendfile calls run in
MEDIA_SENDERS threads (the kernel's copy runs with the GIL released, so they use several cores,
as nginx's workers do; from the loop's thread alone 16 clients got 0.66-0.77x nginx). Every other request is left unread. The
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
import os
import queue
import re
import select
import socket
import threading
import time
from collections import deque
from email.utils import formatdate
from pathlib import Path

from .. import tokens
from . import mediafiles
from .httphead import boot_target, byte_range, loggable_path, parse_head
from .kickstart import MAX_MAC_HEADERS, macs_from
from .recorder import Fetch, Recorder

log = logging.getLogger("provision.http")

MEDIA_SENDERS = 2  # threads that run /media sendfile calls
MAX_HEAD = 8192  # a boot client's request is a few hundred bytes; a longer one goes to waitress
_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")  # sent as is in Content-Disposition, as werkzeug does


class _Conn:
    __slots__ = ("sock", "addr", "out", "keep", "last", "closing", "waiting", "file")

    def __init__(self, sock: socket.socket, addr) -> None:
        self.sock, self.addr, self.out, self.keep, self.closing = sock, addr, b"", True, False
        self.waiting = False  # out of the loop: a kickstart answer waits for its fetch, or a sender has it
        self.file: list[int] | None = None  # [descriptor, offset, bytes left] of a /media answer after `out`
        self.last = time.monotonic()


class Front:
    """Accepts on the public HTTP socket; see the module's docstring. `wsgi` is the waitress server
    (created on the same socket, but not accepting) that takes the connections handed over."""

    def __init__(self, listener: socket.socket, wsgi, store, bootcache, metrics, *, idle_timeout: float,
                 connection_limit: int, media_root: Path | None = None, access_log: bool = False) -> None:
        self.media_root, self.access_log = media_root, access_log
        self.listener, self.wsgi, self.bootcache, self.metrics = listener, wsgi, bootcache, metrics
        self.recorder = Recorder(store, self._recorded)
        self.idle_timeout, self.limit = idle_timeout, connection_limit
        self.conns: dict[int, _Conn] = {}
        self.answered = self.handed = 0
        self._ep = select.epoll()
        self._stop = threading.Event()
        self._accepting = False
        self._date, self._date_at = b"", 0.0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._recorded_fetches: deque[Fetch] = deque()
        self._to_send: queue.SimpleQueue[tuple[int, _Conn] | None] = queue.SimpleQueue()
        self._sent: deque[tuple[int, _Conn, str]] = deque()  # back from a sender: "more", "done" or "error"
        self._senders = [threading.Thread(target=self._send_files, name=f"media-sender-{i}", daemon=True)
                         for i in range(MEDIA_SENDERS)]

    # -- the loop --------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        self.listener.setblocking(False)
        lfd = self.listener.fileno()
        self._ep.register(self._wake_r, select.EPOLLIN)
        self.recorder.start()
        for sender in self._senders:
            sender.start()
        next_sweep = time.monotonic() + 1.0
        try:
            while not self._stop.is_set():
                self._gate()
                for fd, events in self._ep.poll(0.5):
                    if fd == lfd:
                        self._accept()
                    elif fd == self._wake_r:
                        self._woken()
                    elif (conn := self.conns.get(fd)) is not None:
                        self._event(fd, conn, events)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + 1.0
                    self._sweep()
        finally:
            self.recorder.stop()
            for _ in self._senders:
                self._to_send.put(None)
            for fd in list(self.conns):
                self._close(fd)
            self._ep.close()

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"s")

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
        if conn.out or conn.file is not None:
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
        if parsed is not None and parsed.path.startswith("/ks/"):
            self._kickstart(fd, conn, parsed, end + 4)
            return
        if parsed is not None and parsed.path.startswith("/media/") and self.media_root is not None:
            self._media(fd, conn, parsed, end + 4)
            return
        data = kind = None
        if parsed is not None:
            mac, kind = boot_target(parsed.path, parsed.query)
            if mac is not None:  # a miss (not rendered yet, or changed a moment ago) renders in waitress
                data = self.bootcache.cached(kind, mac)
        if data is None:
            self._hand_over(fd, conn)
            return
        self.metrics.renders.labels(kind).inc()
        self._answer(fd, conn, end + 4, parsed.keep, self._response(data, parsed.keep, parsed.http10),
                     f"boot.{kind}", parsed.path, 200, len(data))

    def _kickstart(self, fd: int, conn: _Conn, parsed, head_len: int) -> None:
        """A kickstart fetch whose every check the cache can answer: a live build's token, and MAC
        headers that are all the node's own. It is answered once its fetch is committed (many fetches
        share one commit); anything else, a denial included, is for Flask (web/kickstart.py)."""
        token, macs = parsed.path[len("/ks/"):], macs_from(parsed.macs)
        hit = self.bootcache.cached_kickstart(tokens.digest(token)) if tokens.looks_valid(token) else None
        if hit is None or not macs or len(macs) > MAX_MAC_HEADERS or any(self.bootcache.owner(m) != hit[0] for m in macs):
            self._hand_over(fd, conn)
            return
        _node, build_id, data = hit
        self._ep.unregister(fd)  # the request stays unread until the fetch is recorded
        conn.waiting = True
        self.recorder.put(Fetch(fd, conn, build_id, f"kickstart fetched by {conn.addr[0]}", macs, head_len,
                                 self._response(data, parsed.keep, parsed.http10), parsed.keep))

    def _media(self, fd: int, conn: _Conn, parsed, head_len: int) -> None:
        """A file under [paths] media, whole or one byte range, sent by sendfile; a conditional or
        multi-range request, an unsatisfiable range and an odd name are for Flask (ops.media)."""
        target = None if parsed.conditional else mediafiles.resolve(self.media_root, parsed.path[len("/media/"):])
        if target is None or not _SIMPLE_NAME.match(target.name):
            self._hand_over(fd, conn)
            return
        try:
            ffd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._hand_over(fd, conn)
            return
        st = os.fstat(ffd)
        span = byte_range(parsed.range, st.st_size)
        if span is None:
            os.close(ffd)
            self._hand_over(fd, conn)
            return
        first, last = span
        fields = mediafiles.headers(target.name, st, first, last) + [("Content-Disposition", f"inline; filename={target.name}")]
        conn.file = [ffd, first, last - first + 1]  # sent after the head
        self._answer(fd, conn, head_len, parsed.keep,
                     self._head(b"206 Partial Content" if parsed.range else b"200 OK", fields, parsed.keep, parsed.http10),
                     "ops.media", parsed.path, 206 if parsed.range else 200, last - first + 1)

    def _recorded(self, fetch: Fetch) -> None:
        """The recorder's thread: a fetch is committed (or failed); the loop answers it."""
        self._recorded_fetches.append(fetch)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def _woken(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        self._answer_recorded()
        self._take_back_sent()

    def _send_files(self) -> None:
        """A sender thread: sendfile on a connection handed over by the loop until its socket is full
        (or the file is out, or the connection failed), then give the connection back to the loop.
        Nothing else touches a connection while a sender has it (`waiting`)."""
        while (job := self._to_send.get()) is not None:
            fd, conn = job
            outcome = "done"
            try:
                while conn.file is not None:
                    ffd, offset, left = conn.file
                    sent = os.sendfile(fd, ffd, offset, min(left, 1 << 24))
                    if sent == 0:
                        raise OSError("the file shrank while it was sent")
                    conn.file = [ffd, offset + sent, left - sent] if left > sent else None
                    if conn.file is None:
                        os.close(ffd)
            except BlockingIOError:
                outcome = "more"
            except OSError:
                outcome = "error"
            self._sent.append((fd, conn, outcome))
            self._wake()

    def _take_back_sent(self) -> None:
        while self._sent:
            fd, conn, outcome = self._sent.popleft()
            if self.conns.get(fd) is not conn:
                continue  # closed meanwhile (the front is stopping)
            conn.waiting = False
            conn.last = time.monotonic()
            if outcome == "error":
                self._close(fd)
            elif outcome == "more":
                self._ep.register(fd, select.EPOLLOUT)
            else:
                self._ep.register(fd, select.EPOLLIN)
                self._answered_all(fd, conn)

    def _answer_recorded(self) -> None:
        while self._recorded_fetches:
            f = self._recorded_fetches.popleft()
            if self.conns.get(f.fd) is not f.conn:
                continue  # closed meanwhile
            f.conn.waiting = False
            self._ep.register(f.fd, select.EPOLLIN)
            if not f.recorded:  # refused by the store's own check, or the store failed: Flask decides
                self._hand_over(f.fd, f.conn)
                continue
            self.metrics.renders.labels("kickstart").inc()
            self._answer(f.fd, f.conn, f.head_len, f.keep, f.response, "kickstart.kickstart", "/ks/", 200,
                         len(f.response))

    def _answer(self, fd: int, conn: _Conn, head_len: int, keep: bool, out: bytes, endpoint: str, path: str,
                status: int, size: int) -> None:
        """Read exactly the request that was peeked at (a pipelined next one stays), count and log
        it as Flask would, and send `out` (then conn.file, if any)."""
        conn.sock.recv(head_len)
        conn.keep, conn.out = keep, out
        self.answered += 1
        self.metrics.http_requests.labels(endpoint, str(status)).inc()
        if self.access_log:  # the same line as Flask's (web/__init__.py), tokens masked
            log.info("http GET %s from %s: %s %s", loggable_path(path), conn.addr[0], status, size)
        self._flush(fd, conn)

    def _response(self, data: bytes, keep: bool, http10: bool) -> bytes:
        return self._head(b"200 OK", [("Content-Length", str(len(data))),
                                      ("Content-Type", "text/plain; charset=utf-8")], keep, http10) + data

    def _head(self, status: bytes, fields: list[tuple[str, str]], keep: bool, http10: bool) -> bytes:
        now = time.time()
        if now - self._date_at >= 1.0:
            self._date, self._date_at = formatdate(now, usegmt=True).encode(), now
        connection = b"Connection: Keep-Alive\r\n" if keep and http10 else (b"" if keep else b"Connection: close\r\n")
        lines = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in fields)
        return b"HTTP/1.1 %s\r\n%sDate: %s\r\nServer: provision\r\n%s\r\n" % (status, lines, self._date, connection)

    def _flush(self, fd: int, conn: _Conn) -> None:
        try:
            while conn.out:
                conn.out = conn.out[conn.sock.send(conn.out):]
        except BlockingIOError:
            self._ep.modify(fd, select.EPOLLOUT)
            return
        except OSError:
            self._close(fd)
            return
        if conn.file is not None:  # a /media answer: a sender thread has the kernel copy the file
            self._ep.unregister(fd)
            conn.waiting = True
            self._to_send.put((fd, conn))
            return
        self._ep.modify(fd, select.EPOLLIN)
        self._answered_all(fd, conn)

    def _answered_all(self, fd: int, conn: _Conn) -> None:
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
        for fd in [fd for fd, c in self.conns.items() if c.last < idle_since and not c.waiting]:
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
        if conn.file is not None:
            os.close(conn.file[0])
            conn.file = None
