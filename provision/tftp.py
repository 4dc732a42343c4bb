"""Read-only TFTP server on tftpy's protocol engine (contexts, states, packets).

tftpy's own `TftpServer.listen` ends its loop on an unexpected exception from a malformed
datagram and uses select() (which fails past descriptor 1023), so this module runs the (small)
loop itself, on selectors (epoll), with a cap on concurrent sessions:
- every request goes through `open_file` (tftpy's root is an empty directory): per-MAC GRUB and
  pxelinux configs come from the boot-config cache shared with HTTP (render/cache.py), whose
  refresher renders changed nodes in the background; static loaders come from [paths]
  bootfiles and kernels from [paths] media under `media/`; `..`, symlinks leaving a root,
  templates (*.j2) and non-regular files are refused;
- write requests are refused (`upload_open` returns None -> access violation);
- a datagram that does not parse is logged and dropped; the loop goes on.
Files are handed to tftpy as real file objects (tftpy issue 155: a BytesIO kills its loop).
RFC 2348 blksize and RFC 2349 tsize are negotiated by tftpy.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tftpy.TftpContexts import TftpContextServer
from tftpy.TftpShared import MAX_BLKSIZE, TftpTimeout, TftpTimeoutExpectACK

from .bootnames import classify
from .metrics import Metrics
from .render.cache import BootCache

log = logging.getLogger("provision.tftp")
REFUSED_SUFFIXES = (".j2", ".md")


class FileResolver:
    """Maps a TFTP path to a readable file object, or None (file not found / refused)."""

    def __init__(self, bootfiles: Path, media: Path, cache: BootCache | None,
                 metrics: Metrics | None = None) -> None:
        self.roots = {"": Path(bootfiles).resolve(), "media/": Path(media).resolve()}
        self.cache, self.metrics = cache, metrics

    def __call__(self, path: str, raddress=None, rport=None):
        outcome, fileobj = self.open(path)
        if self.metrics:
            self.metrics.tftp_requests.labels(outcome).inc()
        if fileobj is None:
            log.info("tftp %s from %s: %s", path, raddress, outcome)
        return fileobj

    def open(self, path: str):
        per_mac = classify(path)
        if per_mac is not None:
            try:
                data = self.cache.boot_config(*per_mac) if self.cache else None
            except Exception as exc:  # a node that cannot be rendered: that node gets nothing, the loop goes on
                log.warning("tftp %s: cannot render: %s", path, exc)
                return "render-error", None
            if data is None:
                return "unknown-mac", None
            tmp = tempfile.TemporaryFile()
            tmp.write(data)
            tmp.seek(0)
            return "config", tmp
        rel = path.lstrip("/")
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..") for p in parts) or rel.endswith(REFUSED_SUFFIXES):
            return "refused", None
        prefix = "media/" if rel.startswith("media/") else ""
        root = self.roots[prefix]
        target = (root / rel[len(prefix):]).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return ("refused" if target.exists() else "not-found"), None
        try:
            return "file", open(target, "rb")
        except OSError:
            return "not-found", None


RFC2348_MAX = 65464  # largest blksize RFC 2348 allows (fits one UDP datagram with its 4-byte header)
_ERROR = 5


def error_packet(code: int, message: str) -> bytes:
    """RFC 1350 ERROR: opcode 5, error code, message, NUL."""
    return struct.pack("!HH", _ERROR, code) + message.encode()[:200] + b"\0"


def _requested_blksize(buffer: bytes) -> int | None:
    """The blksize option of an RRQ/WRQ (RFC 2347 options follow filename and mode), or None."""
    parts = buffer[2:].split(b"\0")
    opts = parts[2:]
    for name, value in zip(opts[::2], opts[1::2], strict=False):
        if name.lower() == b"blksize":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


class _V6Socket:
    """An IPv6 UDP socket for a tftpy session: tftpy unpacks recvfrom's address as (host, port),
    IPv6 gives (host, port, flowinfo, scope_id)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)

    def recvfrom(self, size: int):
        data, addr = self._sock.recvfrom(size)
        return data, addr[:2]

    def __getattr__(self, name):
        return getattr(self._sock, name)


class TftpService:
    """One selectors (epoll) loop for the listening socket and every session's socket. The loop
    never ends on an exception (each one is logged and the loop goes on); at most `max_sessions`
    transfers run at once (a further RRQ gets ERROR 0 "server busy"); a retransmission restarts
    the session's timer, so retries are spaced by `timeout`; `alive` tells /healthz whether the
    loop is running."""

    def __init__(self, resolver: Callable, empty_root: Path, *, timeout: float = 5.0, retries: int = 5,
                 max_sessions: int = 512) -> None:
        self.resolver = resolver
        self.root = str(Path(empty_root).resolve())
        os.makedirs(self.root, exist_ok=True)
        self.timeout, self.retries, self.max_sessions = timeout, retries, max_sessions
        self.sessions: dict[tuple[str, int], TftpContextServer] = {}
        self.sock: socket.socket | None = None
        self.sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        self.listen_ip = ""
        self.family = socket.AF_INET
        self.alive = False
        self.refused_busy = 0

    def bind(self, host: str, port: int) -> int:
        """Bind the listening socket (IPv4, or IPv6 for an address with ':'; '::' takes both)."""
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            if self.family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        self.listen_ip = host if host not in ("", "0.0.0.0", "::") else ""
        return sock.getsockname()[1]

    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        assert self.sock is not None, "bind() first"
        self.sel.register(self.sock, selectors.EVENT_READ, None)
        self.alive = True
        try:
            while not self._stop.is_set():
                try:
                    for key, _ in self.sel.select(0.5):
                        if key.data is None:
                            self._accept()
                        else:
                            self._cycle(key.data)
                    self._check_timeouts()
                except Exception:  # never let one bad datagram or session end the service
                    log.exception("tftp loop: unexpected error; going on")
        finally:
            self.alive = False
            for key in list(self.sessions):
                self._end(key)
            self.sel.close()
            self.sock.close()

    def _reply_error(self, addr, code: int, message: str) -> None:
        try:
            self.sock.sendto(error_packet(code, message), addr)
        except OSError:
            pass

    def _accept(self) -> None:
        try:
            buffer, addr = self.sock.recvfrom(MAX_BLKSIZE)
        except OSError:
            return
        host, port = addr[0], addr[1]
        key = (host, port)
        if key in self.sessions:
            return  # a retransmitted request for a session already under way
        blksize = _requested_blksize(buffer) if buffer[:2] in (b"\0\1", b"\0\2") else None
        if blksize is not None and not 8 <= blksize <= RFC2348_MAX:
            self._reply_error(addr, 8, f"blksize must be 8..{RFC2348_MAX} (RFC 2348)")
            return
        if len(self.sessions) >= self.max_sessions:
            self.refused_busy += 1
            self._reply_error(addr, 0, "server busy, try again")
            return
        v6 = self.family == socket.AF_INET6
        # tftpy resolves the peer with gethostbyname (IPv4 only) and opens an IPv4 socket: for an
        # IPv6 peer, build the context on a placeholder and set its peer and socket ourselves
        ctx = TftpContextServer("127.0.0.1" if v6 else host, port, self.timeout, self.root, self.resolver,
                                _refuse_upload, retries=self.retries)
        if v6:
            ctx._TftpContext__host = ctx.address = host  # what tftpy's `host` property reads and checks
            ctx.sock.close()
            ctx.sock = _V6Socket()
        if self.listen_ip:
            ctx.sock.bind((self.listen_ip, 0))
        self.sessions[key] = ctx
        self.sel.register(ctx.sock, selectors.EVENT_READ, key)
        try:
            ctx.start(buffer)
        except TftpTimeoutExpectACK:
            ctx.timeout_expectACK = True
        except Exception as exc:  # malformed or refused: log, drop, keep serving
            log.warning("tftp request from %s:%s dropped: %s", host, port, exc)
            self._end(key)
            return
        if ctx.state is None:
            self._end(key)

    def _cycle(self, key) -> None:
        ctx = self.sessions.get(key)
        if ctx is None:
            return
        ctx.timeout_expectACK = False
        try:
            ctx.cycle()
        except TftpTimeoutExpectACK:
            ctx.timeout_expectACK = True
        except Exception as exc:
            log.warning("tftp session %s:%s ended: %s", key[0], key[1], exc)
            self._end(key)
            return
        if ctx.state is None:
            self._end(key)

    def _check_timeouts(self) -> None:
        now = time.time()
        for key, ctx in list(self.sessions.items()):
            try:
                ctx.checkTimeout(now)
            except TftpTimeout:
                ctx.retry_count += 1
                if ctx.retry_count >= ctx.retries:
                    log.warning("tftp session %s:%s timed out", *key)
                    self._end(key)
                else:
                    try:
                        ctx.state.resendLast()
                        ctx.last_update = now  # the next retry waits a full timeout again
                    except Exception:
                        self._end(key)

    def _end(self, key) -> None:
        ctx = self.sessions.pop(key, None)
        if ctx is not None:
            try:
                self.sel.unregister(ctx.sock)
            except (KeyError, ValueError, OSError):
                pass
            try:
                ctx.end()
            except Exception:
                pass


def _refuse_upload(path, context):
    log.warning("tftp write request for %s refused (read-only server)", path)
    return None
