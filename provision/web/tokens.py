"""Personal API tokens over the API: each account lists, makes and revokes its own (an admin may
revoke anyone's). A token is shown once, when it is made; the store keeps its digest."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..errors import InputError
from .auth import api_auth, principal
from .deps import services

bp = Blueprint("tokens", __name__, url_prefix="/api/v1")


def token_json(t) -> dict:
    return {"id": t.id, "user": t.user, "role": t.role, "label": t.label, "created_at": t.created_at.isoformat(),
            "expires_at": t.expires_at.isoformat(), "revoked": t.revoked_at is not None,
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None}


def make_token(label: object, days: object) -> tuple[dict, str]:
    """A token for the account of this request (its role), valid `days` (at most [auth] token_days)."""
    who = principal()
    assert who is not None
    most = services().cfg.auth.token_days
    if not isinstance(label, str) or not 1 <= len(label.strip()) <= 64:
        raise InputError("label: a name for the token, 1 to 64 characters")
    if days is None:
        days = most
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= most:
        raise InputError(f"days: a whole number of days, 1 to {most} ([auth] token_days)")
    record, token = services().store.create_api_token(who.name, who.role, label.strip(), days)
    return token_json(record), token


@bp.get("/tokens")
@api_auth
def list_tokens():
    who = principal()
    assert who is not None
    return jsonify(tokens=[token_json(t) for t in services().store.api_tokens(who.name)])


@bp.post("/tokens")
@api_auth
def create_token():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InputError("a JSON object: {\"label\": ..., \"days\": ...}")
    record, token = make_token(body.get("label"), body.get("days"))
    return jsonify(token=token, **record), 201


@bp.delete("/tokens/<int:token_id>")
@api_auth
def revoke_token(token_id: int):
    who = principal()
    assert who is not None
    t = services().store.revoke_api_token(token_id, None if who.role == "admin" else who.name)
    return jsonify(token_json(t))
