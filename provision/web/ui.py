"""The web console: the fleet (web/fleetview.py), a node's actions, steps, facts, history, previews
and events (web/nodeactions.py), rebuild runs with a live timeline (web/gantt.py), and starting a
rebuild (the dry-run plan first, then the node count or the cluster's name typed back).
Server-rendered templates (templates/), a little plain JavaScript (static/console.js) for live
updates. Every form that changes something carries a CSRF token (Flask-WTF)."""

from __future__ import annotations

import re

from flask import Blueprint, Response, abort, g, jsonify, redirect, render_template, request, session, url_for

from ..capture.diff import diff
from ..errors import InputError, NotFound, ProvisionError
from ..integrations.directory import Account, DirectoryDown, LoginRefused
from ..render import KINDS, check_kickstart
from ..store import utcnow
from ..workflow import states as S
from ..workflow import submit, timeline
from ..workflow.timeline import duration
from . import fleetview, gantt, nodeactions
from .api import EVENTS_SHOWN
from .auth import BREAK_GLASS, SESSION_HOURS, fingerprint, principal, token_ok, ui_auth
from .deps import services, web
from .rebuilds import run_json, wake_conductor
from .tokens import make_token

bp = Blueprint("ui", __name__, template_folder="templates", static_folder="static", static_url_path="/console")

_LOCAL_PATH = re.compile(r"^/(?:[A-Za-z0-9_.~-]+(?:/[A-Za-z0-9_.~-]+)*/?)?\Z")  # /a/b: never //host, \t, CR
MARKS = {S.DONE: "✔", S.FAILED: "✘"}


def _safe_next(value: str | None) -> str:
    """Only a plain local path is a redirect target after login (no open redirect)."""
    return value if value and _LOCAL_PATH.match(value) else "/"


@bp.route("/login", methods=["GET", "POST"])
def login():
    """A directory user's name and password, or (break-glass) the admin token. Refusals say little
    (the audit trail records why); after [auth] login_attempts failures for a name or from an
    address, logins there wait (429)."""
    error, status = None, 200
    nxt = _safe_next(request.values.get("next"))
    if request.method == "POST":
        who, error, status = _log_in()
        if who is not None:
            g.principal, g.actor = who, who.name
            session.clear()
            session["admin"] = fingerprint()
            session["sid"] = services().store.create_ui_session(SESSION_HOURS * 3600, user=who.name, role=who.role)
            return redirect(nxt)
    return render_template("login.html", title="log in", next=nxt, error=error), status


def _log_in() -> tuple[Account | None, str | None, int]:
    """(who, None, 302) or (None, what to tell, status); g.audit_reason: why, for the audit trail."""
    f = request.form
    user, password, token = (f.get("username") or "").strip(), f.get("password") or "", f.get("token") or ""
    keys = (f"user:{user.lower() or '(token)'}", f"addr:{request.remote_addr}")
    throttle = web().logins
    wait = throttle.wait(*keys)
    if wait > 0:
        g.audit_reason = "throttled"
        return None, f"too many failed logins: try again in {int(wait) + 1} s", 429
    if token or not user:
        if token_ok(token or password):
            return Account(BREAK_GLASS, "admin"), None, 302
        throttle.failed(*keys)
        g.audit_reason = "wrong admin token"
        return None, "wrong token", 401
    try:
        return services().directory.authenticate(user, password), None, 302
    except LoginRefused as exc:
        throttle.failed(*keys)
        g.audit_reason, g.audit_user = exc.reason, user
        return None, str(exc), 401
    except DirectoryDown as exc:
        g.audit_reason, g.audit_user = str(exc), user
        return None, "the directory cannot be reached: try again, or log in with the admin token", 503


@bp.post("/logout")
def logout():
    principal()  # who is logging out, for the audit trail
    services().store.end_ui_session(session.get("sid"))  # a copy of the cookie ends with it
    session.clear()
    return redirect("/login")


@bp.get("/")
@ui_auth
def index():
    """The fleet: counts per state, sortable columns (failed first by default), grouping by
    cluster, filters and the page in the URL; one store query however many nodes."""
    store = services().store

    def ip_of(name: str) -> str:
        facts = store.get(name).node.facts
        mgmt = facts.management if facts is not None else None
        return str(mgmt.address.ip) if mgmt is not None and mgmt.address is not None else ""
    page = fleetview.build(store, fleetview.Query.parse(request.args), ip_of)
    return render_template("fleet.html", title="Fleet", page=page, marks=MARKS, per_page=fleetview.PER_PAGE,
                           states=fleetview.ORDER)


@bp.get("/nodes/<name>")
@ui_auth
def node(name: str):
    return node_page(name)


def node_page(name: str, checks: list[dict] | None = None):
    """A node: its actions, the steps of its last rebuild, facts, history, previews, events."""
    store = services().store
    rec = store.get(name)
    snaps = store.snapshots(name)
    history = [(s, diff(snaps[i - 1].facts, s.facts) if i else None) for i, s in enumerate(snaps)]
    previews: list[tuple[str, str, str | None, list[str] | None]] = []
    for kind in KINDS:
        try:
            text = services().renderer.render(name, kind, install=True, show_secrets=False).text
            previews.append((kind, text, None, check_kickstart(text) if kind == "kickstart" else None))
        except ProvisionError as exc:
            previews.append((kind, "", str(exc), None))
    now = utcnow()
    steps = [{"step": sp.step, "start": sp.start.isoformat(timespec="seconds"),
              "end": sp.end.isoformat(timespec="seconds") if sp.end else "now",
              "took": duration(sp.seconds(now)), "outcome": sp.outcome}
             for sp in timeline.last_rebuild(name, store.transitions([name])[name])]
    return render_template("node.html", title=name, rec=rec, facts=rec.node.facts, history=list(reversed(history)),
                           previews=previews, events=list(reversed(store.events(name, limit=EVENTS_SHOWN))),
                           events_total=store.event_count(name), steps=steps, checks=checks,
                           actions=nodeactions.offered(name, rec), state=store.node_state(name),
                           power=_power_seen(store.fleet(name=name)[0]),
                           retry_at=submit.retry_at(store, name), audit=store.audit(target=name, limit=50))


def _power_seen(row) -> str:
    return f"{row.power_state}, seen {fleetview.age(row.power_seen_at)} ago" if row.power_seen_at else "unknown"


@bp.post(f"/nodes/<name>/do/<any({', '.join(repr(a) for a in nodeactions.ACTIONS)}):action>")
@ui_auth
def node_action(name: str, action: str):
    return nodeactions.act(name, action)


def _tokens_page(made: str | None = None, status: int = 200):
    who = principal()
    assert who is not None
    return render_template("tokens.html", title="API tokens", who=who, made=made,
                           tokens=services().store.api_tokens(who.name), most=services().cfg.auth.token_days), status


@bp.get("/tokens")
@ui_auth
def tokens_page():
    return _tokens_page()


@bp.post("/tokens")
@ui_auth
def create_token():
    days = request.form.get("days") or None
    _record, token = make_token(request.form.get("label"), int(days) if days and days.isdigit() else days)
    return _tokens_page(made=token, status=201)


@bp.post("/tokens/<int:token_id>/revoke")
@ui_auth
def revoke_token(token_id: int):
    who = principal()
    assert who is not None
    services().store.revoke_api_token(token_id, None if who.role == "admin" else who.name)
    return redirect(url_for("ui.tokens_page"))


@bp.get("/audit")
@ui_auth
def audit():
    return render_template("audit.html", title="Audit", audit=services().store.audit(limit=500))


@bp.get("/runs")
@ui_auth
def runs():
    store = services().store
    runs_ = list(reversed(store.rebuilds()))
    return render_template("runs.html", title="Rebuild runs", runs=runs_,
                           gone={r.id for r in runs_ if store.runner_gone(r)})


@bp.get("/runs/<int:run_id>")
@ui_auth
def run(run_id: int):
    store = services().store
    r = store.rebuild(run_id)
    canary, width = int(r.options.get("canary") or 0), int(r.options.get("max_parallel") or 1)
    nodes = []
    for i, name in enumerate(r.nodes):
        st = store.node_state(name)
        mine = st.rebuild_id == r.id
        shown = st.state if mine else "queued"
        nodes.append({"name": name, "role": f"wave {submit.wave_of(i, canary, width)}"
                      + (" (canary, alone)" if i < canary else ""),
                      "shown": f"{MARKS[shown]} {shown}" if shown in MARKS else shown,
                      "since": st.step_started_at.isoformat(timespec="seconds") if mine and st.step_started_at else "",
                      "reason": st.fail_reason if mine and st.state == S.FAILED else ""})
    retry = [n for n in r.nodes if r.finished and submit.retry_at(store, n)]
    fig = gantt.figures(r, store)
    return render_template("run.html", title=f"Rebuild #{r.id}", run=r, nodes=nodes, retry=retry, fig=fig,
                           timeline_svg=gantt.svg(r, fig), colours=gantt.COLOURS,
                           audit=store.audit(target=f"rebuild {r.id}", limit=50))


@bp.get("/runs/<int:run_id>/timeline.svg")
@ui_auth
def run_timeline(run_id: int):
    """The run's timeline, alone (the run page fetches it again as the run moves)."""
    store = services().store
    r = store.rebuild(run_id)
    return Response(gantt.svg(r, gantt.figures(r, store)), mimetype="image/svg+xml",
                    headers={"Cache-Control": "no-store"})


@bp.get("/runs/<int:run_id>.json")
@ui_auth
def run_json_view(run_id: int):
    store = services().store
    r = store.rebuild(run_id)
    fig = gantt.figures(r, store)
    return jsonify(run_json(r, store) | {"timeline": {"makespan": fig["makespan"], "remaining": fig["remaining"],
                                                      "eta": fig["eta"], "unknown": fig["unknown"]}})


@bp.post("/runs/<int:run_id>/<action>")
@ui_auth(role="operator")
def control(run_id: int, action: str):
    if action not in ("abort", "pause", "continue"):
        abort(404)
    services().store.control_rebuild(run_id, action)
    wake_conductor()
    return redirect(url_for("ui.run", run_id=run_id))


@bp.post("/retry")
@ui_auth(role="operator")
def retry():
    """Retry failed nodes (or nodes a run left part-way) in a new service run, each from where it
    stopped; the button names the nodes and the step."""
    store = services().store
    names = submit.select(store, request.form.getlist("nodes"), None)
    submit.check_rebuildable(store, names, False, retry=True)
    width = min(max(1, int(request.form.get("max_parallel") or 1)), 500)
    run = store.create_rebuild(names, {"max_parallel": width, "min_up": None, "canary": 0, "retry": True},
                               runner="service")
    wake_conductor()
    return redirect(url_for("ui.run", run_id=run.id))


def _request_from_form() -> submit.RebuildRequest:
    f = request.form
    nodes = f.getlist("nodes")
    if f.get("matching") == "1":  # "tick all N matching": the fleet's filter, on every page
        query = fleetview.Query.parse({"q": f.get("m_q", ""), "cluster": f.get("m_cluster", ""),
                                       "state": f.get("m_state", ""), "sort": "name"})
        nodes = list(dict.fromkeys(nodes + fleetview.matching_names(services().store, query)))
    body = {"nodes": nodes, "max_parallel": f.get("max_parallel") or 1,
            "canary": f.get("canary") or None, "min_up": f.get("min_up") or None,
            "accept_drift": f.get("accept_drift") == "1", "allow_gluster": f.get("allow_gluster") == "1"}
    if not body["nodes"]:
        raise InputError("tick at least one node to rebuild")
    return submit.RebuildRequest.parse(body)


def _prepare():
    req = _request_from_form()
    store = services().store
    names = submit.select(store, req.nodes, None)
    submit.check_rebuildable(store, names, False, req.accept_foreign_vg)
    canary = submit.default_canary(req.canary, names)
    names = submit.ordered(store, services().cfg.defaults.batch_order, names, canary)
    options = {"max_parallel": req.max_parallel, "canary": canary, "min_up": req.min_up,
               "accept_drift": req.accept_drift, "allow_gluster": req.allow_gluster}
    return store, names, options


@bp.post("/rebuild/plan")
@ui_auth(role="operator")
def plan():
    store, names, o = _prepare()
    p = submit.plan(store, names, o["max_parallel"], o["min_up"], o["canary"], ctx=services())
    return render_template("plan.html", title="Plan a rebuild", names=names, plan=p, options=o, error=None,
                           confirm=confirmations(store, names))


def confirmations(store, names: list[str]) -> list[str]:
    """What confirms wiping `names`: their count; the cluster's name when they are all of one
    cluster; the node's name when it is one node."""
    clusters = {st.cluster for st in store.node_states(names).values()}
    return [str(len(names))] + (sorted(clusters) if len(clusters) == 1 else []) + (names if len(names) == 1 else [])


@bp.post("/rebuild/start")
@ui_auth(role="operator")
def start():
    store, names, o = _prepare()
    typed = request.form.get("typed", "").strip()
    if typed not in confirmations(store, names):
        p = submit.plan(store, names, o["max_parallel"], o["min_up"], o["canary"])
        error = (f"typed {typed or 'nothing'!r}: type {' or '.join(repr(c) for c in confirmations(store, names))} "
                 "to wipe these nodes; nothing was started")
        return render_template("plan.html", title="Plan a rebuild", names=names, plan=p, options=o, error=error,
                               confirm=confirmations(store, names)), 400
    run = store.create_rebuild(names, o, runner="service")
    wake_conductor()
    return redirect(url_for("ui.run", run_id=run.id))


@bp.errorhandler(403)
def _forbidden(exc):
    """The account's role does not allow this: the page says which role it needs."""
    return render_template("error.html", title="Not allowed", error=exc.description), 403


@bp.errorhandler(ProvisionError)
def _failed(exc):
    """An action that a remote system (a BMC, the engine) refused or failed: the page says why."""
    if isinstance(exc, InputError):
        return _bad_input(exc)
    return render_template("error.html", title="Failed", error=str(exc)), 502


@bp.errorhandler(InputError)
def _bad_input(exc):
    """A refused plan or start: the page says why (naming the node and field), nothing started."""
    code = 404 if isinstance(exc, NotFound) else 409 if type(exc).__name__ == "Conflict" else 400
    return render_template("error.html", title="Not done", error=str(exc)), code
