"""GET /api/v1/events on a real `provision serve`: events written by another process (this test's
own Store, as the CLI runner would) arrive as Server-Sent Events; Last-Event-ID resumes; bad ids,
missing tokens and too many streams are refused."""

from __future__ import annotations

import json

import requests

from provision.domain import load_yaml, parse_nodes

from .conftest import EXAMPLE


def _stream(server, **headers) -> requests.Response:
    return requests.get(server.http + "/api/v1/events", stream=True, timeout=(5, 60),
                        headers={"Authorization": f"Bearer {server.token}"} | headers)


def _next_event(resp) -> dict:
    """The next event of the stream (blocks until the server sends one; the read timeout bounds it)."""
    fields = {}
    while raw := resp.raw.readline():
        line = raw.decode().rstrip("\n")
        if line == "" and "data" in fields:
            return fields
        if line and not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value
    raise AssertionError("the stream ended")


def test_events_stream_live_and_resume(server):
    store = server.svc.store
    store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    with _stream(server) as live:
        assert live.status_code == 200 and live.headers["Content-Type"].startswith("text/event-stream")
        store.add_event("rhvnode3", "capture", "first from another process")
        store.add_event("rhvnode4", "register", "second")
        first, second = _next_event(live), _next_event(live)
    assert first["event"] == "capture" and int(second["id"]) > int(first["id"])
    data = json.loads(first["data"])
    assert (data["node"], data["kind"], data["message"]) == ("rhvnode3", "capture", "first from another process")
    assert data["id"] == int(first["id"]) and data["ts"]
    with _stream(server, **{"Last-Event-ID": first["id"]}) as resumed:  # as a browser reconnects
        again = _next_event(resumed)
    assert again["id"] == second["id"] and json.loads(again["data"])["node"] == "rhvnode4"


def test_events_refusals(server):
    assert requests.get(server.http + "/api/v1/events", timeout=5).status_code == 401
    bad = _stream(server, **{"Last-Event-ID": "yesterday"})
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]
    open_streams = [_stream(server) for _ in range(4)]  # [server] threads = 8: at most 4 streams
    try:
        assert all(s.status_code == 200 for s in open_streams)
        full = _stream(server)
        assert full.status_code == 503 and full.headers["Retry-After"] == "5"
        assert "too many event streams" in full.json()["error"]
    finally:
        for s in open_streams:
            s.close()
