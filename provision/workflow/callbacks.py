"""Callbacks from an installing node: POST /api/v1/callback/<token>/installed|enrolled|failed.

A token is bound to one node's build; a callback is accepted only from one of the node's known
addresses, only while the build lives; a replay gets the same answer and causes no second
action. `installed` first switches the node's boot configs back to local boot (so a node that
PXE-boots again does not reinstall), then does the server side of enrollment and hands the
node what it needs as JSON."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from .. import tokens
from ..errors import ProvisionError
from ..power.base import PowerError
from ..vmedia import remove_iso
from . import states as S
from .context import Context
from .machine import advance, transition

PHASES = ("installed", "enrolled", "failed")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict


def handle(ctx: Context, token: str, phase: str, remote_addr: str, body: bytes, total: int | None = None) -> Reply:
    """`body` may be the tail of a longer upload of `total` bytes (an installer log is truncated)."""
    if phase not in PHASES:
        return Reply(404, {"error": "unknown phase"})
    build = ctx.store.build_by_digest(tokens.digest(token)) if tokens.looks_valid(token) else None
    if build is None or not build.live():
        return Reply(403, {"error": "unknown or expired token"})
    name = build.node
    node = ctx.store.get(name).node
    if not _from_node(node, remote_addr):
        ctx.store.add_event(name, "callback-denied", f"{phase} callback from {remote_addr}: not the node's address")
        return Reply(403, {"error": "not accepted from this address"})
    state = ctx.store.node_state(name)
    if phase == "failed":
        return _failed(ctx, name, state.state, body, len(body) if total is None else total)
    if phase == "installed":
        return _installed(ctx, node, build, state)
    return _enrolled(ctx, name, state.state)


def _from_node(node, remote_addr: str) -> bool:
    try:
        addr = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    known = {a.ip for a in node.facts.addresses()} if node.facts else set()
    return addr in known


def _installed(ctx: Context, node, build, st) -> Reply:
    ctx.store.set_boot_local(build.id)  # reinstall-loop guard, before anything else
    name, state, data = node.name, st.state, st.data
    if state in (S.ENROLL, S.REGISTER, S.DONE) and "enroll_reply" in data:
        # a replay: the same state, no second action, and not the secrets again (the OTP and the
        # registration command's token go out in exactly one reply)
        reply = ctx.unseal(data["enroll_reply"])
        return Reply(200, dict(reply, ipa_otp="", satellite_command="",
                               note="already installed: the one-time password was handed out in the first reply"))
    if state == S.ENROLL and "enroll_reply" not in data:
        # the server that took the first `installed` stopped (killed, or its host went away) after
        # the node moved on and before its enrollment was sealed: the node asks again and gets it
        # now (enroll_server_side clears the half-made IPA host; a fresh one-time password)
        ctx.store.add_event(name, "callback", "installed again: the first reply was never completed; enrolling now")
        return _enroll(ctx, node, data)
    if state in (S.ENROLL, S.REGISTER, S.DONE):
        return Reply(200, {"status": "ok", "note": "already enrolled"})
    if state not in (S.NETBOOT, S.INSTALLING):
        return Reply(409, {"error": f"node is {state}, not installing"})
    moved = transition(ctx.store, name, "installed", expect=state,
                       events=[("callback", "installed: boot configs back to local boot")])
    if moved is None:
        return _installed(ctx, node, build, ctx.store.node_state(name))
    if moved.data.get("vmedia"):
        _eject(ctx, name, build)
    return _enroll(ctx, node, moved.data)


def _enroll(ctx: Context, node, data: dict) -> Reply:
    try:
        reply = enroll_server_side(ctx, node, data)
    except ProvisionError as exc:
        advance(ctx.store, node.name, "fail", expect=S.ENROLL, reason=f"enroll: {exc}")
        return Reply(502, {"error": "enrollment failed on the server; see provision status"})
    return Reply(200, reply)


def _eject(ctx: Context, name: str, build) -> None:
    """The installed system boots from its disk: take the ISO out of the virtual CD (the served
    URL already refuses it: the build no longer boots the install) and delete it."""
    try:
        ejected = ctx.power(ctx.store.get(name).node).eject_media()
        ctx.store.add_event(name, "callback", "virtual media ejected" if ejected
                            else "virtual media: the BMC shows nothing inserted any more")
    except PowerError as exc:  # the node installed; the CD is not needed, and says so
        ctx.store.add_event(name, "callback", f"virtual media not ejected: {exc}")
    remove_iso(ctx.cfg, build)


def enroll_server_side(ctx: Context, node, data: dict) -> dict:
    """IPA host_add with a fresh one-time password (IPv4 and IPv6 addresses) and the recorded
    memberships (host groups, netgroups, HBAC and sudo rules, managedby); a Satellite
    registration command. The reply is kept sealed until the node reports `enrolled`."""
    mgmt = node.facts.management
    ip = str(mgmt.address.ip) if mgmt.address else None
    ip6 = str(mgmt.address6.ip) if mgmt.address6 else None
    if ctx.ipa.host_info(node.fqdn) is not None:  # left by a crash before the reply was sealed
        ctx.ipa.host_del(node.fqdn)
    otp = ctx.ipa.host_add(node.fqdn, ip, ip6)
    membership = data.get("ipa_membership") or {"hostgroups": data.get("ipa_groups", [])}  # older runs: groups
    if any(membership.values()):
        ctx.ipa.restore(node.fqdn, membership)
    ipa = ctx.cfg.ipa
    reply = {"status": "ok", "fqdn": node.fqdn, "ipa_otp": otp,
             "ipa_server": getattr(ctx.ipa, "server", None) or ipa.server or "",
             "ipa_domain": ipa.domain or "", "ipa_realm": ipa.realm or "",
             "satellite_command": ctx.satellite.registration_command(node.fqdn, data.get("satellite_placement")),
             "satellite_ca": _satellite_ca(ctx)}
    ctx.store.update_data(node.name, enroll_reply=ctx.seal(reply))
    return reply


def _enrolled(ctx: Context, name: str, state: str) -> Reply:
    if state in (S.REGISTER, S.DONE):
        return Reply(200, {"status": "ok"})
    if state != S.ENROLL:
        return Reply(409, {"error": f"node is {state}, not enrolling"})
    if advance(ctx.store, name, "enrolled", expect=S.ENROLL, data={"enroll_reply": None}) is None:
        return _enrolled(ctx, name, ctx.store.node_state(name).state)
    return Reply(200, {"status": "ok"})


def _failed(ctx: Context, name: str, state: str, body: bytes, total: int) -> Reply:
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


def _satellite_ca(ctx: Context) -> str:
    """The configured Satellite CA (PEM), handed to the node to trust before it registers."""
    path = ctx.cfg.satellite.ca_file
    if path is None or ctx.cfg.satellite.insecure:
        return ""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ProvisionError(f"[satellite] ca_file {path}: {exc.strerror}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ProvisionError(f"[satellite] ca_file {path}: not a PEM certificate")
    return text
