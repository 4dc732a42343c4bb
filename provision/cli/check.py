"""`provision check NAME`: every preflight check, as a table; exit 1 if any fails."""

from __future__ import annotations

import json

import click

from ..errors import ProvisionError
from ..render.checks import foreign_vgs
from .common import svc, table


def run_checks(s, name: str) -> list[dict]:
    """(check, ok, detail) rows; nothing is changed anywhere."""
    rec = s.store.get(name)
    node, ctx = rec.node, s.workflow
    rows = []

    def check(what: str, fn) -> None:
        try:
            detail = fn() or "ok"
            rows.append({"check": what, "result": "ok", "detail": detail})
        except ProvisionError as exc:
            rows.append({"check": what, "result": "FAIL", "detail": str(exc)})
        except Exception as exc:  # a check must report, not crash the table
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

    def bmc():
        driver = ctx.power(node)
        driver.validate()
        if node.bmc.driver != "redfish":
            return f"{node.bmc.label} power {driver.get_power_state()}"
        uefi = node.facts.firmware == "uefi" if node.facts is not None else None
        # reachable, credentials accepted, what the BMC offers, and what the netboot step will ask of it
        info = driver.check(uefi=uefi, device="cd" if node.bmc.boot == "vmedia" else "network")
        if info["problems"]:
            raise ProvisionError("; ".join(info["problems"]))
        cds = [m for m, types in info["virtual_media"] if "CD" in types or "DVD" in types]
        return (f"{node.bmc.label} Redfish{' ' + info['vendor'] if info['vendor'] else ''}: power {info['power']}, "
                f"reset {', '.join(info['reset'])}, boot targets {', '.join(info['boot_targets'])}, CD virtual media "
                f"{', '.join(cds) or 'none'} under {info['media_home']}; netboot: {'; '.join(info['plan'])}")

    def engine():
        host = ctx.engine.find_host(node.name)
        if host is None:
            raise ProvisionError(f"the engine does not know host {node.name}")
        return f"host {host.name} is {host.status}"

    def ipa():
        info = ctx.ipa.host_info(node.fqdn)
        return f"host groups: {', '.join(info['hostgroups']) or '-'}" if info else "logged in; host not enrolled"

    def satellite():
        ctx.satellite.validate()
        return "configured" + (f", registration command for {node.fqdn} available"
                               if ctx.satellite.registration_command(node.fqdn) else "")

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
    for what, fn in (("bmc", bmc), ("engine", engine), ("ipa", ipa), ("satellite", satellite)):
        check(what, fn)
    return rows


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def check(ctx, name, as_json) -> None:
    """Run every preflight check for NAME (DNS, BMC login, engine, IPA, Satellite); changes nothing."""
    rows = run_checks(svc(ctx), name)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        table(rows, ["check", "result", "detail"])
    if any(r["result"] != "ok" for r in rows):
        ctx.exit(1)
