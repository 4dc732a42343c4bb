"""Callbacks from an installing node: POST /api/v1/callback/<token>/installed|enrolled|failed.

A token is bound to one node's build; a callback is accepted only from one of the node's known
addresses, only while the build lives; a replay gets the same answer and causes no second
action. `installed` first switches the node's boot configs back to local boot (so a node that
PXE-boots again does not reinstall), then hands the node the enrollment prepared at `arm`
(enroll.py) as JSON."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import tokens
from ..core.sources import from_node
from ..errors import ProvisionError
from ..power.base import PowerError
from ..vmedia import remove_iso
from . import enroll
from . import states as S
from .machine import advance, transition

if TYPE_CHECKING:  # services builds what steps use: it imports this package
    from ..services import Services

PHASES = ("installed", "enrolled", "failed")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict


def handle(ctx: Services, token: str, phase: str, remote_addr: str, body: bytes, total: int | None = None) -> Reply:
    """`body` may be the tail of a longer upload of `total` bytes (an installer log is truncated)."""
    if phase not in PHASES:
        return Reply(404, {"error": "unknown phase"})
    build = ctx.store.build_by_digest(tokens.digest(token)) if tokens.looks_valid(token) else None
    if build is None or not build.live():
        return Reply(403, {"error": "unknown or expired token"})
    name = build.node
    node = ctx.store.get(name).node
    if not _from_node(node, remote_addr):
        ctx.denials.tell(ctx.store.add_event, name, "callback-denied",
                         f"{phase} callback from {remote_addr}: not the node's address")
        return Reply(403, {"error": "not accepted from this address"})
    state = ctx.store.node_state(name)
    if phase == "failed":
        return _failed(ctx, name, state.state, body, len(body) if total is None else total)
    if phase == "installed":
        return _installed(ctx, node, build, state)
    return _enrolled(ctx, name, state.state)


def _from_node(node, remote_addr: str) -> bool:
    return from_node(remote_addr, [a.ip for a in node.facts.addresses()] if node.facts else [])


def _installed(ctx: Services, node, build, st) -> Reply:
    """Hand over the enrollment prepared at `arm`: the same answer to every repeat until the node
    reports `enrolled` (a curl retry, an answer lost on the way), one request at a time per node."""
    with enroll.node_lock(node.name):
        reply, eject = _installed_locked(ctx, node, build, ctx.store.node_state(node.name))
    if eject:  # after the answer, off the node's request: the BMC may take seconds
        threading.Thread(target=_eject, args=(ctx, node.name, build), name=f"eject-{node.name}", daemon=True).start()
    return reply


def _installed_locked(ctx: Services, node, build, st) -> tuple[Reply, bool]:
    ctx.store.set_boot_local(build.id)  # reinstall-loop guard, before anything else
    name, state = node.name, st.state
    if state in (S.REGISTER, S.DONE):
        return Reply(200, {"status": "ok", "fqdn": node.fqdn, "ipa_otp": "", "satellite_command": "",
                           "note": "already enrolled"}), False
    if state not in (S.NETBOOT, S.INSTALLING, S.ENROLL):
        return Reply(409, {"error": f"node is {state}, not installing"}), False
    eject = False
    if state != S.ENROLL:
        moved = transition(ctx.store, name, "installed", expect=state,
                           events=[("callback", "installed: boot configs back to local boot")])
        if moved is None:  # moved meanwhile (a runner, another serve): decide again from where it is now
            return _installed_locked(ctx, node, build, ctx.store.node_state(name))
        st, eject = moved, bool(moved.data.get("vmedia"))
    elif not st.data.get("enroll_reply"):
        ctx.store.add_event(name, "callback", "installed again with no enrollment prepared (a retried "
                            "enrollment, or a server stopped part-way): a fresh one-time password")
    try:
        return Reply(200, enroll.reply(ctx, node, st.data)), eject
    except ProvisionError as exc:
        advance(ctx.store, name, "fail", expect=S.ENROLL, reason=f"enroll: {exc}")
        return Reply(502, {"error": "enrollment failed on the server; see provision status"}), eject


def _eject(ctx: Services, name: str, build) -> None:
    """The installed system boots from its disk: take the ISO out of the virtual CD (the served
    URL already refuses it: the build no longer boots the install) and delete it."""
    try:
        ejected = ctx.power(ctx.store.get(name).node).eject_media()
        ctx.store.add_event(name, "callback", "virtual media ejected" if ejected
                            else "virtual media: the BMC shows nothing inserted any more")
    except PowerError as exc:  # the node installed; the CD is not needed, and says so
        ctx.store.add_event(name, "callback", f"virtual media not ejected: {exc}")
    remove_iso(ctx.cfg, build)


def _enrolled(ctx: Services, name: str, state: str) -> Reply:
    if state in (S.REGISTER, S.DONE):
        return Reply(200, {"status": "ok"})
    if state != S.ENROLL:
        return Reply(409, {"error": f"node is {state}, not enrolling"})
    if advance(ctx.store, name, "enrolled", expect=S.ENROLL, data={"enroll_reply": None}) is None:
        return _enrolled(ctx, name, ctx.store.node_state(name).state)
    return Reply(200, {"status": "ok"})


def _failed(ctx: Services, name: str, state: str, body: bytes, total: int) -> Reply:
    cap = ctx.cfg.defaults.installer_log_max
    truncated = total > cap
    text = ((f"[provision: log truncated, last {cap} of {total} bytes kept]\n" if truncated else "")
            + body[-cap:].decode("utf-8", "replace"))
    logged = False
    while True:  # the runner may move the node on (netboot -> installing) between our read and our write
        if state == S.FAILED:
            return Reply(200, {"status": "recorded"})
        if state not in S.ACTIVE:
            return Reply(409, {"error": f"node is {state}"})
        if not logged:
            ctx.store.add_log(name, "installer", text)
            logged = True
        if advance(ctx.store, name, "fail", expect=state,
                   reason=f"the node reported a failure during {state} ({min(total, cap)} bytes of log kept"
                          f"{f', truncated from {total}' if truncated else ''})") is not None:
            return Reply(200, {"status": "recorded"})
        state = ctx.store.node_state(name).state
