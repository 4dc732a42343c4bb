"""A small threaded HTTPS server for fakes: records every request, and injects faults
(N x 503, a hang past the client's timeout) by path prefix."""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .tls import Tls


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    ts: float = field(default_factory=time.time)

    def json(self):
        return json.loads(self.body or b"null")

    def form(self) -> dict:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Fault:
    prefix: str
    kind: str  # "503" | "hang"
    times: int
    seconds: float = 0.0


class FakeHttpServer:
    def __init__(self, tls: Tls | None) -> None:
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def _serve(self):
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(self.command, split.path, {k: v[0] for k, v in parse_qs(split.query).items()},
                              {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                status, headers, body = fake._dispatch(req)
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    headers = {"Content-Type": "application/json", **headers}
                elif isinstance(body, str):
                    body = body.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls.cert, tls.key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def inject(self, kind: str, prefix: str = "", times: int = 1, seconds: float = 0.0) -> None:
        with self.lock:
            self.faults.append(Fault(prefix, kind, times, seconds))

    def _dispatch(self, req: Request):
        with self.lock:
            self.requests.append(req)
            fault = next((f for f in self.faults if f.times > 0 and req.path.startswith(f.prefix)), None)
            if fault:
                fault.times -= 1
        if fault and fault.kind == "503":
            return 503, {}, "Service Unavailable"
        if fault and fault.kind == "hang":
            time.sleep(fault.seconds)
        with self.lock:
            return self.handle(req)

    def handle(self, req: Request):  # subclasses
        raise NotImplementedError

    def calls(self, prefix: str = "") -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests if r.path.startswith(prefix)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
