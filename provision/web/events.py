"""GET /api/v1/events: the event log of every node as Server-Sent Events (state changes, step
results, callbacks, failures), for the CLI and the web console.

Each event is `id: <event id>`, `event: <kind>` and `data: {"id", "ts", "node", "kind",
"message"}`. A client that reconnects with `Last-Event-ID` (browsers do) gets what it missed; a new
client gets only what happens from now on, or `?since=ID`. Events are read from the store, so a
runner in another process is seen too (a range query every `poll` seconds while idle); a comment
line every 15 s keeps proxies from closing an idle stream. Each stream holds a server thread, so
at most `max_streams` are open at once; one more gets 503."""

from __future__ import annotations

import json
import threading
import time

from flask import Blueprint, Response, jsonify, request, stream_with_context

from .auth import api_or_ui_auth
from .deps import services, web

bp = Blueprint("events", __name__, url_prefix="/api/v1")
POLL, HEARTBEAT = 0.5, 15.0


class Streams:
    """How many event streams are open; at most `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.open -= 1


def _start() -> int:
    for value in (request.headers.get("Last-Event-ID"), request.args.get("since")):
        if value is not None:
            try:
                return max(0, int(value))
            except ValueError:
                return -1
    return services().store.last_event_id()


@bp.get("/events")
@api_or_ui_auth
def events():
    after = _start()
    if after < 0:
        return jsonify(error="Last-Event-ID / since: not an event id (a whole number)"), 400
    streams: Streams = web().streams
    if streams.limit == 0:
        return jsonify(error="no event streams with [server] threads = 1 (each stream holds a server thread; "
                             "set threads to 2 or more)"), 503
    if not streams.take():
        return jsonify(error=f"too many event streams open (at most {streams.limit})"), 503, {"Retry-After": "5"}
    store = services().store

    def feed(after: int):
        try:
            yield "retry: 2000\n\n"
            quiet_since = time.monotonic()
            while True:
                rows = store.events_since(after)
                for id_, ts, node, kind, message in rows:
                    data = json.dumps({"id": id_, "ts": ts.isoformat(), "node": node, "kind": kind, "message": message})
                    yield f"id: {id_}\nevent: {kind}\ndata: {data}\n\n"
                    after = id_
                if rows:
                    quiet_since = time.monotonic()
                    continue
                if time.monotonic() - quiet_since >= HEARTBEAT:
                    yield ": still here\n\n"
                    quiet_since = time.monotonic()
                time.sleep(POLL)
        finally:  # the client went away (the server closes the generator)
            streams.give()

    return Response(stream_with_context(feed(after)), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
