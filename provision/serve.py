"""`provision serve`: the WSGI app under waitress plus the TFTP server, in one process."""

from __future__ import annotations

import dataclasses
import logging
import resource
import signal
import socket
import sys
import threading

import waitress
from waitress.server import MultiSocketServer

from .errors import ProvisionError
from .services import Services
from .tftp import blocking
from .tftp.engine import TftpService
from .tftp.files import FileResolver
from .web import create_app
from .web.gate import Gate
from .workflow.conductor import Conductor

log = logging.getLogger("provision.serve")


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def _raise_fd_limit(wanted: int) -> None:
    """Sessions and connections each hold a descriptor: lift the soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def serve(svc: Services, http_bind: str, tftp_bind: str) -> None:
    cfg = svc.cfg
    s = cfg.server
    _raise_fd_limit(s.tftp_max_sessions + s.http_connection_limit + 256)
    pumps = s.tftp_pumps if s.tftp_send_loop == "native" else 0
    if pumps and not blocking.native():
        log.warning("tftp_send_loop = native, but the C send loop was not built when provision was installed "
                    "(no C compiler?): every file is sent by the main loop")
    resolver = FileResolver(cfg.paths.bootfiles, cfg.paths.media, svc.bootcache, svc.metrics)
    tftp = TftpService(resolver, max_sessions=s.tftp_max_sessions, timeout=s.tftp_timeout, retries=s.tftp_retries,
                       per_source=s.tftp_per_source_sessions, max_timeout=s.tftp_max_client_timeout)
    thost, tport = split_bind(tftp_bind)
    try:
        tport = tftp.bind(thost, tport)
    except OSError as exc:
        raise ProvisionError(f"tftp_bind {tftp_bind}: cannot listen: {exc.strerror}") from None
    hhost, hport = split_bind(http_bind)
    try:
        listener = socket.create_server((hhost, hport), family=socket.AF_INET6 if ":" in hhost else socket.AF_INET,
                                        backlog=2048)
    except OSError as exc:
        raise ProvisionError(f"http_bind {http_bind}: cannot listen: {exc.strerror}") from None
    gate = Gate(listener, limit=s.http_connection_limit, per_source=s.http_per_source_limit,
                head_timeout=s.http_head_timeout, exempt=s.trusted_proxies)
    svc = dataclasses.replace(svc, tftp=tftp, gate=gate)
    if s.conductor:
        svc = dataclasses.replace(svc, conductor=Conductor(svc, lease=s.run_lease, poll=cfg.defaults.poll_interval))
    conductor = svc.conductor
    app = create_app(svc)
    # waitress reads, parses and answers every request; it is given the gate's listener through its
    # public `sockets` argument (web/gate.py bounds what waitress has no setting for). Its own
    # connection limit is above the gate's, which decides.
    http = waitress.create_server(app, sockets=gate.listening_sockets(), threads=s.threads, ident="provision",
                                  clear_untrusted_proxy_headers=False,  # web/proxies.py decides
                                  channel_timeout=s.http_channel_timeout,
                                  connection_limit=s.http_connection_limit + 16,
                                  cleanup_interval=max(1, min(30, s.http_channel_timeout // 2)),
                                  max_request_header_size=gate.max_head,
                                  asyncore_use_poll=True)  # select() fails past descriptor 1023
    svc.bootcache.start()
    tftp.start_pumps(pumps)
    threading.Thread(target=tftp.serve_forever, name="tftp", daemon=True).start()
    threading.Thread(target=gate.serve_forever, name="http-gate", daemon=True).start()
    if conductor is not None:
        conductor.start()

    def stop(signum, _frame):
        log.info("signal %s: stopping", signum)
        if conductor is not None:
            conductor.stop()  # its runs go back to the queue for the next serve
        gate.stop()
        tftp.stop()
        tftp.stop_pumps()  # now: the loop thread is a daemon and may not reach its own cleanup
        svc.bootcache.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"provision serving http://{hhost}:{listener.getsockname()[1]} tftp://{thost}:{tport}", flush=True)
    try:
        http.run()
    finally:
        # on SIGTERM a multi-socket waitress stops its threads and closes its sockets itself (run()):
        # closing it again would wait for a stuck stream a second time
        if not isinstance(http, MultiSocketServer):
            http.close()
        sys.stdout.flush()
