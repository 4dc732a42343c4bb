"""The runner's steps. Each is idempotent: run twice, it does the work once (what was done is
recorded in the node's step data before moving on), so a crash at any point can be resumed.
A step gets the node's state as the runner knows it (its step data, and the generation its
record is read at), returns normally when done (a `Done`
carries what to record with the move to the next step, in the same transaction) and raises a
ProvisionError to fail the node. What must survive a crash in the middle of a step (what was
deleted, that the BMC was told) is written at once, before the step goes on."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import tokens
from ..capture import service
from ..capture.diff import diff
from ..capture.engine import facts_from_engine
from ..errors import ProvisionError
from ..integrations.engine import ENGINE_VM
from ..secretfiles import read_secret
from ..store import NodeState, utcnow
from . import enroll, fencing, gate
from . import states as S
from .bootprobe import boot_mac, probe_iso
from .nicmap import map_by_mac

if TYPE_CHECKING:  # services builds what steps use: it imports this package
    from ..services import Services


class StepError(ProvisionError):
    pass


@dataclass
class Done:
    """What a finished step records with its move: step data to merge, and (kind, message) events."""
    data: dict = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)


def _node(ctx: Services, st: NodeState):
    rec = ctx.store.get(st.name, st.generation)
    if rec.node.facts is None:
        raise StepError(f"node {st.name}: no facts snapshot; capture or import facts before a rebuild")
    return rec.node


def preflight(ctx: Services, st: NodeState) -> Done:
    name, data = st.name, st.data
    node = _node(ctx, st)
    facts = node.facts
    if facts.missing():
        raise StepError(f"node {name}: the facts snapshot is partial, missing {' and '.join(facts.missing())}")
    if facts.install_disk.wwn is None and facts.install_disk.serial is None:
        raise StepError(f"node {name}: install disk {facts.install_disk.id} has no WWN or serial")
    host = ctx.engine.find_host(node.name)
    if host is None:
        raise StepError(f"node {name}: the engine does not know host {node.name}")
    if host.gluster and not data.get("allow_gluster"):
        raise StepError(f"node {name}: host {host.name} is in gluster-enabled cluster {node.cluster}: the gluster "
                        "bricks on it are not recovered by a reinstall (heal or replace them yourself); "
                        "rebuild with --allow-gluster to go on")
    mgmt = facts.management
    problems = ctx.dns.check(node.fqdn, [str(a.ip) for a in (mgmt.address, mgmt.address6) if a is not None])
    if problems:
        raise StepError(f"node {name}: DNS: " + "; ".join(problems))
    try:  # the point of no return: media, BMC, IPA, Satellite, engine cluster, before anything is deleted
        events = gate.passed(ctx, node)
    except ProvisionError as exc:
        raise StepError(str(exc)) from None
    # what the host is besides its networks, recorded once (the host is removed later)
    keep = {} if "hosted_engine" in data else {"hosted_engine": host.hosted_engine, "gluster": host.gluster}
    return Done({"engine_host_id": host.id, **keep}, events)


def capture(ctx: Services, st: NodeState) -> Done:
    """Refresh the facts from the engine and compare them with the last snapshot: drift (MACs,
    bonds, network placement, IPs, disks) stops the node unless the run accepts drift. The
    snapshot the rebuild will use is pinned in the step data."""
    name, data = st.name, st.data
    rec = ctx.store.get(name, st.generation)
    if rec.snapshot_id is None:
        raise StepError(f"node {name}: no facts snapshot")
    raw = ctx.engine.host_network_json(data["engine_host_id"]) if data.get("engine_host_id") else None
    if raw is None:
        return Done({"snapshot_id": rec.snapshot_id},
                    [("capture", f"the engine reported no NICs; using snapshot #{rec.snapshot_id}")])
    previous = ctx.store.snapshot(name, rec.snapshot_id).facts
    fresh = facts_from_engine(raw, previous)
    drifted = [c.text for c in diff(previous, fresh) if c.drift]
    if drifted and not data.get("accept_drift"):
        raise StepError(f"node {name}: facts drifted since snapshot #{rec.snapshot_id} "
                        f"(check them, then --resume {name} --accept-drift): " + "; ".join(drifted))
    snapshot_id, _ = service.store(ctx, name, fresh, "engine")
    return Done({"snapshot_id": snapshot_id})


def drain(ctx: Services, st: NodeState) -> None:
    name, data = st.name, st.data
    node = _node(ctx, st)
    host = ctx.engine.find_host(node.name)
    if host is None:
        raise StepError(f"node {name}: host {node.name} vanished from the engine before it was drained")
    if host.status != "maintenance":  # a gluster host stops its gluster service on the way (bricks go offline)
        ctx.engine.deactivate(host.id, stop_gluster=bool(data.get("gluster")))
    ctx.engine.wait_status(host.id, {"maintenance"}, ctx.timeout(S.DRAIN) or 1800)


def retire(ctx: Services, st: NodeState) -> Done:
    name, data = st.name, st.data
    node = _node(ctx, st)
    host = ctx.engine.find_host(node.name)
    if "ipa_membership" not in data:  # recorded before anything is deleted, so a crash cannot lose it
        info = ctx.ipa.host_info(node.fqdn)
        mgmt = node.facts.management
        data = ctx.store.update_data(
            name, ipa_membership=info or {}, ipa_known=info is not None,
            satellite_placement=ctx.satellite.host_info(node.fqdn) or {},
            # what host_del --updatedns removes from IPA DNS; host_add --ip-address puts it back
            ipa_dns=[str(a.ip) for a in (mgmt.address, mgmt.address6) if a is not None],
            # the engine's power management for the host: restored by register
            fence_agents=ctx.engine.fence_agents(host.id) if host is not None else [])
    if host is not None:
        if data.get("hosted_engine"):
            vms = ctx.engine.host_vms(host.id)
            if ENGINE_VM in vms:
                raise StepError(f"node {name}: host {host.name} still runs the engine VM ({ENGINE_VM}); migrate it "
                                "to another hosted-engine host first: a host is never retired while it runs the engine")
            if not data.get("he_undeployed"):  # out of the hosted-engine set before removal, as oVirt documents
                timeout = ctx.timeout(S.DRAIN) or 1800
                # a resumed run may find the host mid-undeploy: let it settle, then undeploy only if still needed
                if ctx.engine.wait_status(host.id, {"maintenance"}, timeout).hosted_engine:
                    ctx.engine.undeploy_hosted_engine(host.id)
                    ctx.engine.wait_status(host.id, {"maintenance"}, timeout)
                ctx.store.update_data(name, he_undeployed=True)
        ctx.engine.remove(host.id)
    ctx.satellite.delete_host(node.fqdn)
    if ctx.ipa.host_info(node.fqdn) is not None:
        ctx.ipa.host_del(node.fqdn)
    return Done({"retired_at": utcnow().isoformat()})


def engine_key_path(ctx: Services) -> Path:
    return ctx.cfg.paths.state_dir / "engine.pub"


def arm(ctx: Services, st: NodeState) -> Done | None:
    name, data = st.name, st.data
    path = engine_key_path(ctx)
    if ctx.cfg.defaults.ssh_key_file is None and not (path.is_file() and path.read_text().strip()):
        # the kickstart authorizes the engine's key for root, so host deploy can log in. Written
        # whole or not at all: a kill -9 mid-write left an empty file that a resumed run trusted,
        # and every render then failed on it
        key = ctx.engine.ssh_public_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".engine.pub.")  # one per writer: runs arm in parallel
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # a public key, as written before
        os.replace(tmp, path)
    if not data.get("enroll_reply"):  # the node's enrollment, ready before it is powered on (enroll.py)
        enroll.prepare(ctx, _node(ctx, st), data)
    build = ctx.store.active_build(name)
    if build is not None and build.id == data.get("build_id"):
        return None
    build, _ = ctx.store.arm(name, ctx.key, ctx.cfg.defaults.build_token_ttl, data.get("snapshot_id"))
    return Done({"build_id": build.id})


def netboot(ctx: Services, st: NodeState) -> None:
    """At most one power action per build: the driver keys the operation by the build, so a
    resumed step (after kill -9 anywhere) finds it done instead of power-cycling again."""
    name, data = st.name, st.data
    node = _node(ctx, st)
    build_id = data.get("build_id")
    uefi = node.facts.firmware == "uefi"
    if node.bmc.boot == "vmedia":
        return _vmedia_boot(ctx, node, data, uefi)
    if ctx.bootcheck is not None and not data.get("netboot_done"):
        try:
            ctx.store.add_event(name, "netboot", ctx.bootcheck(node))
        except ProvisionError as exc:
            raise StepError(f"{exc}; not power-cycling") from None
    action = ctx.power(node).netboot(uefi=uefi, once=f"{name}-build{build_id}")
    ctx.store.record_step(name, {"netboot_done": action}, [(
        "netboot", "BMC already told to netboot for this build; not power-cycling again"
        if action == "already" else f"one-shot network boot set (uefi={uefi}); power {action}")])


def _vmedia_boot(ctx: Services, node, data: dict, uefi: bool) -> None:
    """The build's ISO in the BMC's virtual CD, a one-time boot from it, then power: no DHCP."""
    name, build = node.name, ctx.store.active_build(node.name)
    if build is None:
        raise ProvisionError(f"node {name}: no live build to boot (armed builds expire: [defaults] build_token_ttl)")
    token = tokens.derive(ctx.key, build.nonce)
    url = f"{ctx.cfg.server.public_url}/vmedia/{token}/boot.iso"
    shown = url.replace(token, "********")
    driver = ctx.power(node)
    if not data.get("netboot_done"):
        if ctx.bootcheck is not None:
            try:
                ctx.store.add_event(name, "netboot", probe_iso(node, url))
            except ProvisionError as exc:
                raise StepError(f"{exc}; not power-cycling") from None
        media = driver.insert_media(url)
        ctx.store.add_event(name, "netboot", f"virtual media {media}: {shown} inserted")
    action = driver.boot_from("cd", uefi=uefi, once=f"{name}-build{data.get('build_id')}")
    ctx.store.record_step(name, {"netboot_done": action, "vmedia": True}, [(
        "netboot", "BMC already told to boot the ISO for this build; not power-cycling again"
        if action == "already" else f"one-shot boot from virtual CD set (uefi={uefi}); power {action}")])


def register(ctx: Services, st: NodeState) -> None:
    name, data = st.name, st.data
    node = _node(ctx, st)
    if data.get("satellite_placement") and not data.get("satellite_restored"):
        if not ctx.satellite.restore_content(node.fqdn, data["satellite_placement"]):
            raise StepError(f"node {name}: Satellite does not know {node.fqdn} after it registered")
        data = ctx.store.update_data(name, satellite_restored=True)
    facts = ctx.store.snapshot(name, data.get("snapshot_id")).facts
    host = ctx.engine.find_host(node.name) or ctx.engine.add_host(node.name, node.fqdn, node.cluster,
                                                                  hosted_engine=bool(data.get("hosted_engine")))
    if data.get("fence_host") != host.id:  # the agents recorded at retire (else the BMC's own), in order
        agents, notes = fencing.agents_to_restore(node.bmc, data.get("fence_agents"))
        password = read_secret(Path(node.bmc.password_file), None, f"node {name}: bmc.password_file")
        for agent in agents:
            ctx.engine.add_fence_agent(host.id, agent, password)
        ctx.store.record_step(name, {"fence_host": host.id},
                              [("register", "fence agents: " + "; ".join(fencing.describe(a) for a in agents))]
                              + [("register", n) for n in notes])
    timeout = ctx.timeout(S.REGISTER) or 3600
    status = ctx.engine.wait_status(host.id, {"maintenance", "up"}, timeout).status  # host deploy finished
    if data.get("networks_host") != host.id:
        reported = ctx.engine.host_nics(host.id)
        if reported is not None:
            try:
                names = map_by_mac(facts, reported)
            except ProvisionError as exc:
                raise StepError(f"node {name}: {exc}") from None
            renamed = {old: new for old, new in names.items() if old != new}
            if renamed:
                ctx.store.add_event(name, "register", "NICs renamed by the reinstall (matched by MAC): "
                                    + ", ".join(f"{o} -> {n}" for o, n in sorted(renamed.items())))
            facts = facts.renamed(names)
        ctx.engine.setup_networks(host.id, facts)
        ctx.store.record_step(name, {"networks_host": host.id},
                              [("register", f"setupnetworks from facts snapshot #{data.get('snapshot_id')}")])
    if status != "up":
        ctx.engine.activate(host.id)
        ctx.engine.wait_status(host.id, {"up"}, timeout)
    ctx.store.end_build(name, "done")


RUN = {S.PREFLIGHT: preflight, S.CAPTURE: capture, S.DRAIN: drain, S.RETIRE: retire, S.ARM: arm,
       S.NETBOOT: netboot, S.REGISTER: register}

# What each step does to the outside world, for `rebuild --dry-run` (the plan touches nothing).
PLAN = {
    S.PREFLIGHT: ["dns: A/AAAA and PTR of {fqdn}", "engine: find host {name}",
                  "engine: hosts Up in cluster {cluster} >= min-up + 1",
                  "gate (nothing deleted before it passes): media served as the node fetches it, bmc {bmc} and "
                  "what netboot asks of it, ipa DNS zones, satellite host group and activation keys, "
                  "engine cluster {cluster}"],
    S.CAPTURE: ["engine: NICs and network attachments of {name}; stop on drift from snapshot #{snapshot}"],
    S.DRAIN: ["engine: deactivate host {name} (stop_gluster_service if its cluster runs gluster: bricks on it are "
              "NOT recovered, refused without --allow-gluster)", "engine: wait for maintenance (VMs migrate away)"],
    S.RETIRE: ["ipa: host_show {fqdn} (record host groups, netgroups, HBAC and sudo rules, managedby)",
               "engine: record the fence agents of {name}",
               "satellite: record organization, location, host group, lifecycle environment, content view of {fqdn}",
               "engine: hosted-engine host: refuse while it runs the engine VM; undeploy (install "
               "undeploy_hosted_engine=true), wait for maintenance", "engine: remove host {name}",
               "satellite: delete host {fqdn}", "ipa: host_del {fqdn}"],
    S.ARM: ["ipa: host_add {fqdn} (one-time password, A and AAAA as the zones allow), restore host groups, "
            "netgroups, HBAC and sudo rules, managedby; satellite: registration command (sealed until installed)",
            "store: build token; boot configs of {macs} -> install; wipes {install} only, keeps {kept}"],
    S.NETBOOT: ["server: /boot/{bootcfg} over HTTP and TFTP, fetched as the node will: must be the install config",
                "bmc {bmc}: one-shot boot from network (uefi={uefi}); power cycle if on, else power on"],
    S.INSTALLING: ["wait: GET /ks/<token>, then POST callback installed (boot configs -> local)"],
    S.ENROLL: ["callback installed: hands over the enrollment prepared at arm (the same answer until enrolled)",
               "wait: POST callback enrolled"],
    S.REGISTER: ["satellite: content view and lifecycle environment of {fqdn} back as recorded",
                 "engine: add host {name} ({fqdn}) to {cluster}, activate=false (deploy_hosted_engine=true if it "
                 "was a hosted-engine host)",
                 "engine: fence agents as recorded at retire (else {fence})", "engine: wait for maintenance",
                 "engine: setupnetworks ({bonds}; {networks})", "engine: activate, wait for up",
                 "store: build token revoked"],
}


def plan_lines(node, snapshot_id: int | None) -> list[tuple[str, str]]:
    f = node.facts
    values = {
        "name": node.name, "fqdn": node.fqdn, "cluster": node.cluster, "snapshot": snapshot_id,
        "bmc": node.bmc.label, "fence": fencing.describe(fencing.default_agent(node.bmc)), "uefi": f.firmware == "uefi" if f else "?",
        "macs": ", ".join(f.macs()) if f else "?",
        "bootcfg": (("grub/grub.cfg-01-" if f.firmware == "uefi" else "pxelinux.cfg/01-")
                    + boot_mac(node).replace(":", "-")) if f else "?",
        "install": f.install_disk.by_id if f and f.install_disk else "?",
        "kept": ", ".join(d.by_id for d in f.kept_disks) or "(none)" if f else "?",
        "bonds": ", ".join(f"{b.name} {b.option_string()}" for b in f.bonds) if f else "?",
        "networks": ", ".join(f"{a.network}@{a.interface}" + (f" {a.address}" if a.address else "")
                              for a in f.networks) if f else "?",
    }
    return [(step, line.format(**values)) for step in S.STEPS for line in PLAN[step]]
