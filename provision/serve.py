"""`provision serve`: the WSGI app under waitress plus the TFTP server, in one process."""

from __future__ import annotations

import logging
import resource
import signal
import socket
import sys
import threading

import waitress

from .errors import ProvisionError
from .services import Services
from .tftp import blocking
from .tftp.engine import TftpService
from .tftp.files import FileResolver
from .web import create_app
from .web.front import Front
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
    native = s.tftp_send_loop == "native"
    if native and s.tftp_pumps and not blocking.native():
        log.warning("tftp_send_loop = native, but the C send loop was not built when provision was installed "
                    "(no C compiler?): big files are sent by the Python loop")
    tftp = TftpService(None, max_sessions=s.tftp_max_sessions, timeout=s.tftp_timeout, retries=s.tftp_retries,
                       native=native)
    thost, tport = split_bind(tftp_bind)
    try:
        tport = tftp.bind(thost, tport)
    except OSError as exc:
        raise ProvisionError(f"tftp_bind {tftp_bind}: cannot listen: {exc.strerror}") from None
    app = create_app(cfg, store=svc.store, renderer=svc.renderer, admin_token=svc.admin_token(),
                     secret_key=svc.key, workflow=svc.workflow, metrics=svc.metrics, tftp=tftp,
                     bootcache=svc.bootcache)
    hhost, hport = split_bind(http_bind)
    try:
        listener = socket.create_server((hhost, hport), family=socket.AF_INET6 if ":" in hhost else socket.AF_INET,
                                        backlog=2048)
    except OSError as exc:
        raise ProvisionError(f"http_bind {http_bind}: cannot listen: {exc.strerror}") from None
    # waitress serves on the same socket but does not accept: the front accepts, answers cached boot
    # configs itself and hands every other connection to waitress (web/front.py)
    http = waitress.create_server(app, sockets=[listener], _start=False, threads=s.threads, ident="provision",
                                  clear_untrusted_proxy_headers=True, channel_timeout=s.http_channel_timeout,
                                  connection_limit=s.http_connection_limit,
                                  cleanup_interval=max(1, min(30, s.http_channel_timeout // 2)),
                                  asyncore_use_poll=True)  # select() fails past descriptor 1023
    front = Front(listener, http, svc.store, svc.bootcache, svc.metrics, idle_timeout=s.http_channel_timeout,
                  connection_limit=s.http_connection_limit, media_root=cfg.paths.media,
                  access_log=s.access_log)
    app.extensions["provision"]["front"] = front
    conductor = None
    if s.conductor:
        conductor = Conductor(svc.workflow, lease=s.run_lease, poll=cfg.defaults.poll_interval)
        app.extensions["provision"]["conductor"] = conductor
    svc.bootcache.start()
    tftp.resolver = FileResolver(cfg.paths.bootfiles, cfg.paths.media, svc.bootcache, svc.metrics)
    tftp.start_pumps(s.tftp_pumps)
    threading.Thread(target=tftp.serve_forever, name="tftp", daemon=True).start()
    threading.Thread(target=front.serve_forever, name="http-front", daemon=True).start()
    if conductor is not None:
        conductor.start()

    def stop(signum, _frame):
        log.info("signal %s: stopping", signum)
        if conductor is not None:
            conductor.stop()  # its runs go back to the queue for the next serve
        front.stop()
        tftp.stop()
        tftp.stop_pumps()  # now: the loop thread is a daemon and may not reach its own cleanup
        svc.bootcache.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"provision serving http://{hhost}:{http.effective_port} tftp://{thost}:{tport}", flush=True)
    try:
        http.run()
    finally:
        http.close()
        sys.stdout.flush()
