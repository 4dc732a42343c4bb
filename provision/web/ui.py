"""Minimal web console: node list and a per-node page with masked previews."""

from __future__ import annotations

import re

from flask import Blueprint, redirect, render_template_string, request, session

from ..errors import ProvisionError
from ..render import KINDS
from .auth import fingerprint, token_ok, ui_auth
from .deps import svc

bp = Blueprint("ui", __name__)

_BASE = """<!doctype html><html><head><meta charset="utf-8"><title>provision{% if title %} — {{ title }}{% endif %}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}
pre{background:#f4f4f4;padding:1em;overflow-x:auto}.err{color:#a00}</style></head><body>
<h1><a href="{{ url_for('ui.index') }}">provision</a>{% if title %} — {{ title }}{% endif %}</h1>
{% if session.get('admin') %}<form method="post" action="{{ url_for('ui.logout') }}"><button>Log out</button></form>{% endif %}
{{ body|safe }}</body></html>"""

_LOGIN = """<form method="post"><label>Admin token <input type="password" name="token" autofocus></label>
<input type="hidden" name="next" value="{{ next }}"><button>Log in</button></form>
{% if error %}<p class="err">{{ error }}</p>{% endif %}"""

_INDEX = """<table><tr><th>node</th><th>fqdn</th><th>cluster</th><th>profile</th><th>state</th><th>boot</th></tr>
{% for r, armed in rows %}<tr><td><a href="{{ url_for('ui.node', name=r.node.name) }}">{{ r.node.name }}</a></td>
<td>{{ r.node.fqdn }}</td><td>{{ r.node.cluster }}</td><td>{{ r.node.profile }}</td><td>{{ r.state }}</td>
<td>{{ 'install' if armed else 'local' }}</td></tr>{% endfor %}</table>"""

_NODE = """<p>{{ rec.node.fqdn }} · cluster {{ rec.node.cluster }} · profile {{ rec.node.profile }} · state {{ rec.state }}
· facts snapshot {{ rec.snapshot_id }}</p>
{% if facts %}<h2>Disks</h2><ul>{% for d in facts.disks %}<li>{{ d.by_id }} — {{ 'INSTALL (wiped)' if d.install else 'kept, never touched' }}</li>{% endfor %}</ul>{% endif %}
{% for kind, text, error in previews %}<h2>{{ kind }}</h2>{% if error %}<p class="err">{{ error }}</p>{% else %}<pre>{{ text }}</pre>{% endif %}{% endfor %}"""


def page(title: str, body_template: str, **ctx) -> str:
    body = render_template_string(body_template, **ctx)
    return render_template_string(_BASE, title=title, body=body)


_LOCAL_PATH = re.compile(r"^/(?:[A-Za-z0-9_.~-]+(?:/[A-Za-z0-9_.~-]+)*/?)?$")  # /a/b: never //host, \t, CR


def _safe_next(value: str | None) -> str:
    """Only a plain local path is a redirect target after login (no open redirect)."""
    return value if value and _LOCAL_PATH.match(value) else "/"


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    nxt = _safe_next(request.values.get("next"))
    if request.method == "POST":
        if token_ok(request.form.get("token")):
            session.clear()
            session["admin"] = fingerprint()
            return redirect(nxt)
        error = "wrong token"
    return page("log in", _LOGIN, next=nxt, error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect("/login")


@bp.get("/")
@ui_auth
def index():
    store = svc("store")
    rows = [(r, store.active_build(r.node.name) is not None) for r in store.list_nodes()]
    return page("", _INDEX, rows=rows)


@bp.get("/nodes/<name>")
@ui_auth
def node(name: str):
    rec = svc("store").get(name)
    previews = []
    for kind in KINDS:
        try:
            previews.append((kind, svc("renderer").render(name, kind, install=True).text, None))
        except ProvisionError as exc:
            previews.append((kind, "", str(exc)))
    return page(name, _NODE, rec=rec, facts=rec.node.facts, previews=previews)
