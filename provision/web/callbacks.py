"""POST /api/v1/callback/<token>/<phase>: parse, call workflow.callbacks, render."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..workflow import callbacks
from .deps import svc

bp = Blueprint("callbacks", __name__)


@bp.post("/api/v1/callback/<token>/<phase>")
def callback(token: str, phase: str):
    reply = callbacks.handle(svc("workflow"), token, phase, request.remote_addr or "", request.get_data())
    return jsonify(reply.body), reply.status
