"""The server side of a node's enrollment, prepared before the node is powered on.

`arm` (before `netboot`) does the IPA `host_add` with a fresh one-time password, puts back the
recorded memberships, asks Satellite for the registration command, and keeps the reply sealed in
the node's step data (encrypted with the server key). The `installed` callback then only hands it
over: quick, the same answer to every repeat until the node reports `enrolled`, and no IPA or
Satellite call inside the node's request. A retry of a failed enrollment clears the reply; the next
`installed` from the node's first-boot unit (which asks again after a failure) prepares a fresh one."""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ProvisionError

if TYPE_CHECKING:  # services builds what steps use: it imports this package
    from ..services import Services

# one `installed`/`enrolled` at a time per node in this process: a curl retry that arrives while the
# first request is still working waits for it and gets its answer, it never enrolls a second time
_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_guard = threading.Lock()


def node_lock(name: str) -> threading.Lock:
    with _guard:
        return _locks[name]


def prepare(ctx: Services, node, data: dict) -> dict:
    """IPA host_add with a fresh one-time password (IPv4 and IPv6 addresses) and the recorded
    memberships (host groups, netgroups, HBAC and sudo rules, managedby); a Satellite registration
    command. Sealed into the step data (`enroll_reply`) until the node reports `enrolled`."""
    mgmt = node.facts.management
    ip = str(mgmt.address.ip) if mgmt.address else None
    ip6 = str(mgmt.address6.ip) if mgmt.address6 else None
    if ctx.ipa.host_info(node.fqdn) is not None:  # a half-made host of an earlier try: a fresh one
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
             "satellite_ca": satellite_ca(ctx)}
    ctx.store.update_data(node.name, enroll_reply=ctx.seal(reply))
    return reply


def reply(ctx: Services, node, data: dict) -> dict:
    """The sealed reply, or one prepared now (a retried enrollment, or a run armed before replies
    were prepared at arm)."""
    if data.get("enroll_reply"):
        return ctx.unseal(data["enroll_reply"])
    return prepare(ctx, node, data)


def satellite_ca(ctx: Services) -> str:
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
