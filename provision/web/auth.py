"""Who a request is, and whether their role allows it.

- `Authorization: Bearer <token>`: the break-glass admin token ([server] admin_token_file), or a
  personal API token (`pvt_...`, made by its user; it acts with the role its user had when it was
  made, until it expires or is revoked);
- a console session (the cookie set by the login form): a directory user ([auth], role from their
  groups at login) or the admin token typed into the form.

Roles: viewer (see everything, secrets masked), operator (+ check, capture, rebuild and control
runs), admin (+ inventory, media and accounts). A request without a valid credential is 401 (the
console: to the login page); one whose role is too low is 403, naming both roles."""

from __future__ import annotations

import functools
import hashlib
import hmac

from flask import abort, g, jsonify, redirect, request, session, url_for

from ..integrations.directory import Account, at_least
from .deps import services, web

BREAK_GLASS = "admin (break-glass token)"  # who a request with the admin token is, in the audit trail


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


def _from_bearer() -> Account | None:
    token = bearer()
    if not token:
        return None
    if token_ok(token):
        return Account(BREAK_GLASS, "admin")
    found = services().store.api_token(token)
    return Account(found[1].user, found[1].role) if found else None


def _from_session() -> Account | None:
    if session.get("admin") != fingerprint():
        return None
    who = services().store.ui_session(session.get("sid"))
    return Account(who.user, who.role) if who else None


def principal(console: bool = True) -> Account | None:
    """Who this request is (cached for the request): its bearer token, else (`console`) its session."""
    if "principal" not in g:
        g.principal = _from_bearer() or (_from_session() if console else None)
        if g.principal is not None:
            g.actor = g.principal.name
    return g.principal


def session_ok() -> bool:
    return _from_session() is not None


def _needs(role: str, who: Account) -> str:
    article = "an" if who.role[:1] in ("a", "e", "i", "o", "u") else "a"
    return f"{who.name} is {article} {who.role}: this needs the {role} role"


def api_auth(view=None, *, role: str = "viewer"):
    """An API view: a bearer token whose account has at least `role`."""
    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            who = principal(console=False)
            if who is None:
                return jsonify(error="missing or wrong bearer token"), 401, {"WWW-Authenticate": "Bearer"}
            if not at_least(who.role, role):
                return jsonify(error=_needs(role, who)), 403
            return view(*args, **kwargs)
        return wrapped
    return decorate(view) if view is not None else decorate


def ui_auth(view=None, *, role: str = "viewer"):
    """A console view: a session (or a bearer token) whose account has at least `role`."""
    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            who = principal()
            if who is None:
                return redirect(url_for("ui.login", next=request.path))
            if not at_least(who.role, role):
                abort(403, description=_needs(role, who))
            return view(*args, **kwargs)
        return wrapped
    return decorate(view) if view is not None else decorate


def api_or_ui_auth(view):
    """A read-only view for both: a bearer token (API clients) or a console session (the
    console's EventSource cannot send an Authorization header)."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if principal() is None:
            return jsonify(error="missing or wrong bearer token"), 401, {"WWW-Authenticate": "Bearer"}
        return view(*args, **kwargs)
    return wrapped
