"""The TFTP protocol engine: RFC 1350 read requests with RFC 2347 option negotiation (2348
blksize, 2349 tsize and timeout), on one selectors (epoll) loop.

tftpy parses each request (TftpPacketFactory). The transfer itself is a lean send path of our
own: tftpy's per-packet objects and logging made it 0.57x tftpd-hpa, and its `TftpServer.listen`
ends on an unexpected exception and uses select() (which fails past descriptor 1023).
- each transfer has its own connected UDP socket (the peer's TID); a DATA block is one pread and
  one send; an ACK is four bytes compared, not parsed into objects;
- a retransmission restarts the session's timer, so retries are spaced by the timeout; after
  `retries` the session ends;
- write requests are refused (ERROR 2, read-only server); a datagram that does not parse is
  dropped with a log line; no exception ends the loop;
- at most `max_sessions` transfers at once, and `per_source` from one address (a few hundred
  half-open requests from one place cannot lock the other clients out): a further request gets
  ERROR 0 "server busy";
- a client's `timeout` option is taken up to `max_timeout` seconds and ignored above (RFC 2349:
  not acknowledged), so no session outlives retries x max_timeout;
- a transfer sends exactly the size told (tsize) when the request came: a file that grew is sent to
  that size, one that shrank ends with ERROR 0, never with a short block taken for the end;
- block numbers roll over past 65535 to 0 (as tftpd-hpa does), so files larger than
  65535 blocks still transfer;
- a file of HANDOFF_BLOCKS blocks or more is handed, with its connected socket and open file, to
  one of `[server] tftp_pumps` pump processes (pump.py), which forks a child per transfer that
  sends it in the C loop (blocking.py), as tftpd-hpa does: one loop serving many big
  transfers left clients waiting and cores idle. Resolution and every refusal stay in the main
  process; a child has the socket and the file it was given, nothing else to open. Where the C
  loop was not built there are no pumps, and this loop sends every file;
- a transfer handed to a pump still holds its peer's entry (a retransmitted request starts no
  second transfer) and its source's count until the pump reports its end.
`resolver(path, host, port)` returns a files.Source or None (not found / refused)."""

from __future__ import annotations

import functools
import logging
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable

from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketRRQ, TftpPacketWRQ

from . import blocking
from .pumps import HANDOFF, HANDOFF_BLOCKS, Pump
from .transfer import ACK, ERROR, HEADER, OACK, RFC2348_MAX, Session, error_packet

log = logging.getLogger("provision.tftp")

_PARSER = TftpPacketFactory()


class TftpService:
    """One epoll loop for the listening socket and every session's socket; `alive` tells /healthz
    whether the loop is running; `session_count` is what it and its pumps have open."""

    def __init__(self, resolver: Callable | None, *, timeout: float = 5.0, retries: int = 5,
                 max_sessions: int = 512, per_source: int = 16, max_timeout: float = 10.0) -> None:
        self.resolver = resolver
        self.timeout, self.retries, self.max_sessions = timeout, retries, max_sessions
        self.per_source, self.max_timeout = per_source, max_timeout
        self.sessions: dict[int, Session] = {}  # by the session socket's descriptor
        self._peers: dict[tuple, int | Pump] = {}  # (host, port) -> its session's descriptor, or its pump
        self._sources: Counter[str] = Counter()  # host -> transfers it has (here and in pumps)
        self.completed = self.failed = 0  # transfers of this loop that ended acknowledged / not
        self.sock: socket.socket | None = None
        self._stop = threading.Event()
        self.listen_ip = ""
        self.family = socket.AF_INET
        self.alive = False
        self.refused_busy = self.refused_source = 0
        self.pumps: list[Pump] = []
        self._handlers: dict[int, Callable[[], None]] = {}
        self._poll = select.epoll()

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
        try:  # a boot storm's requests arrive together: room for a few thousand in the kernel
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        self.sock = sock
        self.listen_ip = host if host not in ("", "0.0.0.0", "::") else ""
        return sock.getsockname()[1]

    def stop(self) -> None:
        self._stop.set()

    # -- the loop -------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """The listening loop (`bind` first). Big files go to the pump processes when there are
        any (`start_pumps`); configs and small files are sent from here."""
        assert self.sock is not None, "bind() first"
        self._handlers[self.sock.fileno()] = self._accept
        self._loop()

    def _loop(self) -> None:
        for fd in self._handlers:
            self._poll.register(fd, select.EPOLLIN)
        self.alive = True
        next_check = time.monotonic() + 0.1
        try:
            while not self._stop.is_set():
                try:
                    for fd, _ in self._poll.poll(0.2, 512):
                        handler = self._handlers.get(fd)
                        if handler is not None:
                            handler()
                        else:
                            self._on_packet(fd)
                    now = time.monotonic()
                    if now >= next_check:  # timers need no finer grain than a tenth of a second
                        self._check_timeouts(now)
                        next_check = now + 0.1
                except Exception:  # never let one bad datagram or session end the service
                    log.exception("tftp loop: unexpected error; going on")
        finally:
            self.alive = False
            for fd in list(self.sessions):
                self._end(fd)
            self._end_children()
            self._poll.close()
            if self.sock is not None:
                self.sock.close()
            self.stop_pumps()

    def _end_children(self) -> None:
        """A pump's loop ends its children's transfers (pump.py); the main loop has none."""

    # -- pump processes -------------------------------------------------------------------------
    def start_pumps(self, count: int) -> None:
        """`count` pump processes for big transfers: the kernel's UDP send is most of a transfer's
        cost, and one process cannot spread it over the cores as tftpd-hpa's forks do."""
        started = [Pump.spawn(self.retries) for _ in range(count)] if count and blocking.native() else []
        for pump in started:  # spawned together, so they start in parallel; each says when it is ready
            pump.wait_ready()
            self.pumps.append(pump)
            self._handlers[pump.control.fileno()] = functools.partial(self._pump_report, pump)

    def _pump_report(self, pump: Pump) -> None:
        """What a pump says: the end of each transfer (its peer), or end-of-file when it exited."""
        fd = pump.control.fileno()
        for peer in pump.reports():
            self._ended_peer(peer)
        if not pump.alive:  # told once; its transfers are lost, their clients retry
            for key, owner in list(self._peers.items()):
                if owner is pump:
                    self._ended_peer(key)
            if fd >= 0:
                self._handlers.pop(fd, None)
                try:
                    self._poll.unregister(fd)
                except (KeyError, ValueError, OSError):
                    pass

    def stop_pumps(self) -> None:
        for pump in self.pumps:
            pump.stop()

    @property
    def session_count(self) -> int:
        return len(self.sessions) + sum(p.in_flight for p in self.pumps)

    def _hand_off(self, sock: socket.socket, source, blksize: int, timeout: float, first: bytes, addr) -> bool:
        live = [p for p in self.pumps if p.alive]
        if not live or source.fd is None or source.size < HANDOFF_BLOCKS * blksize:
            return False
        pump = min(live, key=lambda p: p.in_flight)
        header = HANDOFF.pack(blksize, timeout, source.size, len(first)) + first + f"{addr[0]}:{addr[1]}".encode()
        try:
            socket.send_fds(pump.control, [header], [sock.fileno(), source.fd])
        except OSError as exc:
            log.warning("tftp pump %s: %s; sending from the main loop", pump.pid, exc)
            pump.alive = False
            return False
        pump.in_flight += 1
        self._peers[tuple(addr[:2])] = pump
        sock.close()
        source.close()
        return True

    def _ended_peer(self, key) -> None:
        if self._peers.pop(key, None) is not None:
            self._sources[key[0]] -= 1
            if self._sources[key[0]] <= 0:
                del self._sources[key[0]]

    # -- requests -------------------------------------------------------------------------------
    def _reply_error(self, addr, code: int, message: str) -> None:
        assert self.sock is not None
        try:
            self.sock.sendto(error_packet(code, message), addr)
        except OSError:
            pass

    def _accept(self) -> None:
        assert self.sock is not None
        for _ in range(64):  # drain a burst of requests before going back to the transfers
            try:
                buffer, addr = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                self._request(buffer, addr)
            except Exception as exc:  # malformed or refused: log, drop, keep serving
                log.warning("tftp request from %s:%s dropped: %s", addr[0], addr[1], exc)

    def _request(self, buffer: bytes, addr) -> None:
        if buffer[:2] not in (b"\0\1", b"\0\2"):
            return  # not a request on the request port: drop silently, as tftpd-hpa does
        try:
            pkt = _PARSER.parse(buffer)
        except Exception as exc:
            log.warning("tftp request from %s:%s does not parse: %s", addr[0], addr[1], exc)
            self._reply_error(addr, 4, "malformed request")
            return
        if isinstance(pkt, TftpPacketWRQ):
            log.warning("tftp write request for %s refused (read-only server)", pkt.filename)
            self._reply_error(addr, 2, "read-only server")
            return
        assert isinstance(pkt, TftpPacketRRQ)
        if addr[:2] in self._peers:
            return  # a retransmitted request for a transfer already under way
        options = {k.lower(): v for k, v in (pkt.options or {}).items()}
        blksize, timeout, oack = 512, self.timeout, {}
        if "blksize" in options:
            try:
                blksize = int(options["blksize"])
            except ValueError:
                blksize = -1
            if not 8 <= blksize <= RFC2348_MAX:
                self._reply_error(addr, 8, f"blksize must be 8..{RFC2348_MAX} (RFC 2348)")
                return
            oack["blksize"] = str(blksize)
        if "timeout" in options:  # RFC 2349: 1..255 seconds; anything else is ignored
            try:
                asked = int(options["timeout"])
            except ValueError:
                asked = 0
            if 1 <= asked <= min(255, self.max_timeout):
                timeout, oack["timeout"] = float(asked), str(asked)
        if self.session_count >= self.max_sessions:
            self.refused_busy += 1
            self._reply_error(addr, 0, "server busy, try again")
            return
        if self._sources[addr[0]] >= self.per_source:
            self.refused_source += 1
            self._reply_error(addr, 0, "server busy: too many transfers from this address")
            return
        source = self.resolver(pkt.filename, addr[0], addr[1]) if self.resolver else None
        if source is None:
            self._reply_error(addr, 1, "file not found")
            return
        if "tsize" in options:
            oack["tsize"] = str(source.size)
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.listen_ip, 0))
            sock.connect(addr)  # the kernel drops datagrams from anyone but the peer
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            source.close()
            log.warning("tftp session for %s:%s: %s", addr[0], addr[1], exc)
            return
        first = struct.pack("!H", OACK) + b"".join(f"{k}\0{v}\0".encode() for k, v in oack.items()) if oack else b""
        if self._hand_off(sock, source, blksize, timeout, first, addr):
            self._sources[addr[0]] += 1
        else:
            self._start(sock, addr, source, blksize, timeout, first)

    def _start(self, sock: socket.socket, addr, source, blksize: int, timeout: float, first: bytes) -> None:
        """Begin a transfer on a connected socket: the OACK `first` if options were agreed, else block 1."""
        session = Session(sock, addr, source, blksize, timeout)
        fd = sock.fileno()
        self.sessions[fd] = session
        self._peers[tuple(addr[:2])] = fd
        self._sources[addr[0]] += 1
        self._poll.register(fd, select.EPOLLIN)
        try:
            if first:
                session.send(first, time.monotonic())
            else:
                session.send_block(1, time.monotonic())
        except OSError as exc:
            log.warning("tftp session %s:%s: %s", addr[0], addr[1], exc)
            self._end(fd)

    # -- transfers ------------------------------------------------------------------------------
    def _on_packet(self, fd: int) -> None:
        """One datagram per wake-up (epoll is level-triggered: another one wakes us again), and no
        exception on the common path: this runs once per block of every transfer."""
        session = self.sessions.get(fd)
        if session is None:
            return
        try:
            data = session.sock.recv(1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # e.g. ICMP port unreachable: the client is gone
            self._end(fd)
            return
        if len(data) < 4:
            return
        opcode, block = HEADER.unpack_from(data)
        if opcode == ACK:
            if block != session.block & 0xFFFF:
                return  # a duplicate or stale ACK: the timer, not it, triggers a resend
            if session.block == session.last_block:
                self._end(fd, ok=True)  # the final block is acknowledged: done
                return
            try:
                session.send_block(session.block + 1, time.monotonic())
            except OSError:  # the client is gone, or the file shrank (the client was told: ERROR)
                self._end(fd)
        elif opcode == ERROR:
            self._end(fd)  # the client gave up (or asked a tsize only and aborted)

    def _check_timeouts(self, now: float) -> None:
        for fd, session in list(self.sessions.items()):
            if now - session.sent_at < session.timeout:
                continue
            session.tries += 1
            if session.tries >= self.retries:
                log.warning("tftp session %s:%s timed out", *session.peer[:2])
                self._end(fd)
                continue
            try:
                session.sock.send(session.packet)
                session.sent_at = now  # the next retry waits a full timeout again
            except OSError:
                self._end(fd)

    def _end(self, fd: int, ok: bool = False) -> None:
        session = self.sessions.pop(fd, None)
        if session is not None:
            if ok:
                self.completed += 1
            else:
                self.failed += 1
            self._ended_peer(tuple(session.peer[:2]))
            try:
                self._poll.unregister(fd)
            except (KeyError, ValueError, OSError):
                pass
            try:
                session.close()
            except OSError:
                pass


