"""Read-only TFTP server on tftpy's protocol engine (contexts, states, packets).

tftpy's own `TftpServer.listen` ends its loop on an unexpected exception from a malformed
datagram, so this module runs the (small) select loop itself:
- every request goes through `open_file` (tftpy's root is an empty directory): per-MAC GRUB and
  pxelinux configs come from an in-memory cache that a background thread re-renders when the
  store changes, so rendering never stalls the loop; static loaders come from [paths]
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
import select
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from tftpy.TftpContexts import TftpContextServer
from tftpy.TftpShared import MAX_BLKSIZE, TftpTimeout, TftpTimeoutExpectACK

from .bootnames import classify
from .metrics import Metrics
from .store import utcnow

log = logging.getLogger("provision.tftp")
REFUSED_SUFFIXES = (".j2", ".md")


class BootConfigCache:
    """(kind, mac) -> rendered bytes for every node, rebuilt off the TFTP loop when the store's
    generation changes or when the next live build expires (so it falls back to local boot)."""

    def __init__(self, store, renderer, *, poll: float = 0.5) -> None:
        self.store, self.renderer, self.poll = store, renderer, poll
        self._data: dict[tuple[str, str], bytes] = {}
        self._stop = threading.Event()
        self.generation = -1
        self.next_expiry: datetime | None = None

    def get(self, kind: str, mac: str) -> bytes | None:
        return self._data.get((kind, mac))

    def refresh(self) -> None:
        generation = self.store.generation()
        data: dict[tuple[str, str], bytes] = {}
        expiries = []
        for rec in self.store.list_nodes():
            if rec.node.facts is None:
                continue
            for kind in ("grub", "pxelinux"):
                try:
                    rendered = self.renderer.render(rec.node.name, kind, show_secrets=True)
                except Exception:  # one broken node must not take the others' boot configs away
                    log.exception("cannot render %s config for node %s", kind, rec.node.name)
                    continue
                if rendered.expires_at:
                    expiries.append(rendered.expires_at)
                for mac in rec.node.facts.macs():
                    data[(kind, mac)] = rendered.text.encode()
        self._data = data  # one atomic swap; readers see the old or the new map, never half
        self.generation, self.next_expiry = generation, min(expiries, default=None)

    def stale(self) -> bool:
        return self.store.generation() != self.generation or (
            self.next_expiry is not None and utcnow() >= self.next_expiry)

    def start(self) -> None:
        self.refresh()
        threading.Thread(target=self._run, name="bootconfig-cache", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                if self.stale():
                    self.refresh()
            except Exception:
                log.exception("boot config cache refresh failed; keeping the previous configs")


class FileResolver:
    """Maps a TFTP path to a readable file object, or None (file not found / refused)."""

    def __init__(self, bootfiles: Path, media: Path, cache: BootConfigCache | None,
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
            data = self.cache.get(*per_mac) if self.cache else None
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


class TftpService:
    def __init__(self, resolver: Callable, empty_root: Path, *, timeout: float = 5.0, retries: int = 5) -> None:
        self.resolver = resolver
        self.root = str(Path(empty_root).resolve())
        os.makedirs(self.root, exist_ok=True)
        self.timeout, self.retries = timeout, retries
        self.sessions: dict[tuple[str, int], TftpContextServer] = {}
        self.sock: socket.socket | None = None
        self._stop = threading.Event()
        self.listen_ip = ""

    def bind(self, host: str, port: int) -> int:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.setblocking(False)
        self.listen_ip = host if host not in ("", "0.0.0.0") else ""
        return self.sock.getsockname()[1]

    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        assert self.sock is not None, "bind() first"
        try:
            while not self._stop.is_set():
                inputs = [self.sock] + [ctx.sock for ctx in self.sessions.values()]
                ready, _, _ = select.select(inputs, [], [], 0.5)
                for sock in ready:
                    if sock is self.sock:
                        self._accept()
                    else:
                        self._cycle(sock)
                self._check_timeouts()
        finally:
            for key in list(self.sessions):
                self._end(key)
            self.sock.close()

    def _accept(self) -> None:
        try:
            buffer, (host, port) = self.sock.recvfrom(MAX_BLKSIZE)
        except OSError:
            return
        key = (host, port)
        if key in self.sessions:
            return  # a retransmitted request for a session already under way
        ctx = TftpContextServer(host, port, self.timeout, self.root, self.resolver, _refuse_upload,
                                retries=self.retries)
        if self.listen_ip:
            ctx.sock.bind((self.listen_ip, 0))
        self.sessions[key] = ctx
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

    def _cycle(self, sock) -> None:
        key = next((k for k, c in self.sessions.items() if c.sock is sock), None)
        if key is None:
            return
        ctx = self.sessions[key]
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
                    except Exception:
                        self._end(key)

    def _end(self, key) -> None:
        ctx = self.sessions.pop(key, None)
        if ctx is not None:
            try:
                ctx.end()
            except Exception:
                pass


def _refuse_upload(path, context):
    log.warning("tftp write request for %s refused (read-only server)", path)
    return None
