"""POST /api/v1/callback/<token>/<phase>: parse, call workflow.callbacks, render."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..workflow import callbacks
from .deps import services

bp = Blueprint("callbacks", __name__)


def _tail(limit: int) -> tuple[bytes, int]:
    """The last `limit` bytes of the body and its full length, read in chunks (bounded memory)."""
    kept, total = bytearray(), 0
    while chunk := request.stream.read(65536):
        total += len(chunk)
        kept += chunk
        if len(kept) > limit:
            del kept[: len(kept) - limit]
    return bytes(kept), total


@bp.post("/api/v1/callback/<token>/<phase>")
def callback(token: str, phase: str):
    body, total = _tail(services().cfg.defaults.installer_log_max)
    reply = callbacks.handle(services(), token, phase, request.remote_addr or "", body, total=total)
    return jsonify(reply.body), reply.status
