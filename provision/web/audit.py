"""The audit trail of the API and the console: after each operator request that changes something,
one row: who (the account the request authenticated as), from where (the client's address, through
trusted proxies), what (the action), on what (a node, a run), how it ended (ok, refused, failed).
Nodes' own requests (kickstarts, callbacks, collector uploads, media) are in their node's events,
not here. No secret goes in: the row names actions and objects, never a body or a token."""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, g, request

from .deps import services

log = logging.getLogger("provision.audit")

# endpoint -> action; only these are recorded
ACTIONS = {
    "api.import_nodes": "node.import",
    "rebuilds.create": "rebuild.submit",
    "rebuilds.abort": "rebuild.abort",
    "rebuilds.pause": "rebuild.pause",
    "rebuilds.resume": "rebuild.continue",
    "ui.login": "login",
    "ui.logout": "logout",
    "ui.control": "rebuild.{action}",
    "ui.retry": "rebuild.retry",
    "ui.start": "rebuild.submit",
    "ui.node_action": "node.{action}",
    "tokens.create_token": "token.create",
    "tokens.revoke_token": "token.revoke",
    "ui.create_token": "token.create",
    "ui.revoke_token": "token.revoke",
}
_RUN = re.compile(r"/(?:api/v1/rebuilds|runs)/(\d+)")


def actor() -> str:
    return getattr(g, "actor", None) or "anonymous"


def outcome(status: int) -> str:
    return "ok" if status < 400 else "refused" if status < 500 else "failed"


def _nodes() -> list[str]:
    body = request.get_json(silent=True) if request.is_json else None
    names = (body or {}).get("nodes") if isinstance(body, dict) else None
    if names is None:
        names = request.form.getlist("nodes")
    return [n for n in names if isinstance(n, str)][:500] if isinstance(names, list) else []


def _target(response: Response) -> str:
    args = request.view_args or {}
    if "run_id" in args:
        return f"rebuild {args['run_id']}"
    if "name" in args:
        return args["name"]
    if "token_id" in args:
        return f"token {args['token_id']}"
    if (request.endpoint or "").endswith("create_token"):
        made = response.get_json(silent=True) if response.is_json else None
        return f"token {made['id']}" if isinstance(made, dict) and "id" in made else "token"
    m = _RUN.search(response.headers.get("Location", ""))
    if m:
        return f"rebuild {m.group(1)}"
    if request.endpoint in ("ui.login", "ui.logout"):
        return "console"
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict) and isinstance(body.get("cluster"), str):
        return f"cluster {body['cluster'][:63]}"
    return "inventory" if request.endpoint == "api.import_nodes" else "rebuild"


def record(response: Response) -> Response:
    action = ACTIONS.get(request.endpoint or "")
    if action is None or request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return response
    if request.endpoint != "ui.login" and getattr(g, "actor", None) is None:
        return response  # not authenticated: no one's action (the refusal is the 401)
    body = request.get_json(silent=True) if request.is_json else None
    if request.endpoint == "rebuilds.create" and isinstance(body, dict) and body.get("dry_run"):
        return response  # a plan changes nothing
    if request.endpoint == "ui.login":
        ok = response.status_code in (302, 303)
        who = actor() if ok else f"{getattr(g, 'audit_user', None) or 'anonymous'} (not logged in)"
        result = "ok" if ok else "refused" if response.status_code < 500 else "failed"
    else:
        who, result = actor(), outcome(response.status_code)
    nodes = _nodes()
    detail = " ".join([f"[{n}]" for n in nodes] + ([g.audit_reason] if getattr(g, "audit_reason", None) else []))
    if result != "ok" and response.is_json:
        error = (response.get_json(silent=True) or {}).get("error")
        if isinstance(error, str):
            detail = (detail + " " + error[:300]).strip()
    try:
        services().store.record_audit(who, request.remote_addr or "?", action.format(**(request.view_args or {})).replace("-", "."),
                                      _target(response), result, detail)
    except Exception:  # the action happened: a failed audit write must not turn it into an error
        log.exception("audit: could not record %s by %s", action, who)
    return response


def init(app: Flask) -> None:
    app.after_request(record)
