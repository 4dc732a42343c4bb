"""`provision serve`: the WSGI app under waitress plus the TFTP server, in one process."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import waitress

from .services import Services
from .tftp import BootConfigCache, FileResolver, TftpService
from .web import create_app

log = logging.getLogger("provision.serve")


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def serve(svc: Services, http_bind: str, tftp_bind: str) -> None:
    cfg = svc.cfg
    app = create_app(cfg, store=svc.store, renderer=svc.renderer, admin_token=svc.admin_token(),
                     secret_key=svc.key, workflow=svc.workflow, metrics=svc.metrics)
    cache = BootConfigCache(svc.store, svc.renderer)
    cache.start()
    tftp = TftpService(FileResolver(cfg.paths.bootfiles, cfg.paths.media, cache, svc.metrics),
                       cfg.paths.state_dir / "tftp-root")
    thost, tport = split_bind(tftp_bind)
    tport = tftp.bind(thost, tport)
    hhost, hport = split_bind(http_bind)
    http = waitress.create_server(app, host=hhost, port=hport, threads=cfg.server.threads,
                                  ident="provision", clear_untrusted_proxy_headers=True)
    threading.Thread(target=tftp.serve_forever, name="tftp", daemon=True).start()

    def stop(signum, _frame):
        log.info("signal %s: stopping", signum)
        tftp.stop()
        cache.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"provision serving http://{hhost}:{http.effective_port} tftp://{thost}:{tport}", flush=True)
    try:
        http.run()
    finally:
        http.close()
        sys.stdout.flush()
