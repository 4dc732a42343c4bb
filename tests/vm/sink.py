"""The VM test's report sink: POST /<name> stores the body as <dir>/<name> (HOST PORT DIR)."""

import http.server
import pathlib
import sys

OUT = pathlib.Path(sys.argv[3])


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        (OUT / self.path.strip("/").replace("/", "_")).write_bytes(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Sink).serve_forever()
