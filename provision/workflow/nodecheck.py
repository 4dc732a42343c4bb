"""Every preflight check for one node, as rows (check, result, detail): what `provision check` and
the console's node page show. Nothing is changed anywhere."""

from __future__ import annotations

import logging

from ..errors import ProvisionError
from ..render.checks import foreign_vgs
from . import gate

log = logging.getLogger("provision.check")


def run_checks(s, name: str) -> list[dict]:
    """(check, ok, detail) rows; nothing is changed anywhere."""
    rec = s.store.get(name)
    node, ctx = rec.node, s
    rows = []

    def check(what: str, fn) -> None:
        try:
            detail = fn() or "ok"
            rows.append({"check": what, "result": "ok", "detail": detail})
        except ProvisionError as exc:
            rows.append({"check": what, "result": "FAIL", "detail": str(exc)})
        except Exception as exc:  # a check must report, not crash the table
            log.debug("check %s of %s", what, name, exc_info=True)
            rows.append({"check": what, "result": "FAIL", "detail": f"{type(exc).__name__}: {exc}"})

    def facts():
        if node.facts is None:
            raise ProvisionError("no facts snapshot")
        d = node.facts.install_disk
        if node.facts.missing():
            raise ProvisionError(f"snapshot #{rec.snapshot_id} is partial, missing {' and '.join(node.facts.missing())}")
        if d.wwn is None and d.serial is None:
            raise ProvisionError(f"install disk {d.id} has no WWN or serial")
        return f"snapshot #{rec.snapshot_id}, install disk {d.by_id}, keeps {len(node.facts.kept_disks)} disk(s)"

    def dns():
        mgmt = node.facts.management
        addrs = [str(a.ip) for a in (mgmt.address, mgmt.address6) if a is not None]
        problems = ctx.dns.check(node.fqdn, addrs)
        if problems:
            raise ProvisionError("; ".join(problems))
        return f"{node.fqdn} <-> {', '.join(addrs)}"

    def engine():
        host = ctx.engine.find_host(node.name)
        if host is None:
            raise ProvisionError(f"the engine does not know host {node.name}")
        return f"host {host.name} is {host.status}; " + gate.engine(ctx, node)

    def ipa():
        info = ctx.ipa.host_info(node.fqdn)
        return f"host groups: {', '.join(info['hostgroups']) or '-'}" if info else "logged in; host not enrolled"

    def kept_disks():
        problems = foreign_vgs(node, node.facts)
        if problems:
            raise ProvisionError("; ".join(problems) + " (rebuild refuses without --accept-foreign-vg)")
        vgs = sorted({vg for d in node.facts.kept_disks for vg in d.vgs})
        return f"{len(node.facts.kept_disks)} kept disk(s)" + (f", volume groups {', '.join(vgs)}" if vgs else "")

    check("facts", facts)
    if node.facts is not None:
        check("kept disks", kept_disks)
        check("dns", dns)
    check("engine", engine)
    check("ipa", ipa)
    if node.facts is None:  # the gate needs facts (firmware, addresses); the BMC can still be asked
        check("bmc", lambda: f"{node.bmc.label} answers: power {ctx.power(node).get_power_state()}")
    else:  # the point of no return's gate, as preflight runs it
        for row in gate.rows(ctx, node):
            if row.system == "engine":
                continue  # in the engine row above
            name = {"ipa": "ipa dns", "satellite": "satellite"}.get(row.system, row.system)
            rows.append({"check": name, "result": "ok" if row.ok else "FAIL", "detail": row.detail})
    return rows
