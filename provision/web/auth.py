"""Admin authentication: `Authorization: Bearer <token>` (API) or a session cookie set by the
login form (web UI). The token comes from [server] admin_token_file."""

from __future__ import annotations

import functools
import hashlib
import hmac

from flask import g, jsonify, redirect, request, session, url_for

from .deps import services, web


def token_ok(presented: str | None) -> bool:
    expected = web().admin_token
    return presented is not None and bool(presented) and hmac.compare_digest(presented.encode(), expected.encode())


def bearer() -> str | None:
    """The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 7235)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def fingerprint() -> str:
    """What a UI session is bound to: a new admin token ends every session made with the old one."""
    return hashlib.sha256(b"ui-session:" + web().admin_token.encode()).hexdigest()[:32]


SESSION_HOURS = 12  # a console login lasts this long (or until logout)


def session_ok() -> bool:
    """A console session made with the current admin token whose login the store still holds live."""
    return session.get("admin") == fingerprint() and services().store.ui_session_live(session.get("sid"))


TOKEN_ACTOR = "admin (token)"  # who a request with the admin token is, in the audit trail
CONSOLE_ACTOR = "admin (console)"  # and a console session made with it


def api_auth(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not token_ok(bearer()):
            return jsonify(error="missing or wrong bearer token"), 401, {"WWW-Authenticate": "Bearer"}
        g.actor = TOKEN_ACTOR
        return view(*args, **kwargs)
    return wrapped


def ui_auth(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if token_ok(bearer()):
            g.actor = TOKEN_ACTOR
        elif session_ok():
            g.actor = CONSOLE_ACTOR
        else:
            return redirect(url_for("ui.login", next=request.path))
        return view(*args, **kwargs)
    return wrapped


def api_or_ui_auth(view):
    """A read-only view for both: the bearer token (API clients) or a console session (the
    console's EventSource cannot send an Authorization header)."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not (token_ok(bearer()) or session_ok()):
            return jsonify(error="missing or wrong bearer token"), 401, {"WWW-Authenticate": "Bearer"}
        return view(*args, **kwargs)
    return wrapped
