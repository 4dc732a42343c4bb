"""The point of no return, named: everything `retire` and the steps after it will need, checked
without harm before anything is deleted. Preflight stops the node on the first row that fails;
`provision check`, `rebuild --dry-run` and the console's plan show the same rows per node.

Rows: the media its profile boots, served as the node will fetch it (mediaprobe.py); its BMC and
what the netboot step will ask of it (for Redfish: the boot target, the mode, virtual media); IPA
and how `host_add` will handle DNS (forward zone, reverse zones); Satellite (host group,
organization, activation keys); the engine cluster the host is added back into."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ProvisionError

if TYPE_CHECKING:  # services builds what steps use: it imports this package
    from ..services import Services


@dataclass(frozen=True)
class Row:
    system: str
    ok: bool
    detail: str


def describe_dns(plan: dict, fqdn: str) -> str:
    zone = fqdn.partition(".")[2]
    if not plan["forward"]:
        return f"IPA does not manage {zone} (or updatedns = false): the host is added back without DNS records"
    parts = [f"{ip} with its PTR" if ptr else f"{ip}, its PTR left to the DNS that has it (no_reverse)"
             for ip, ptr in plan["reverse"].items()]
    return f"zone {zone} in IPA: " + ("; ".join(parts) or "no address")


def checks(ctx: Services, node) -> list[tuple[str, object]]:
    """(system, check) pairs: each check returns what it found or raises ProvisionError."""
    mgmt = node.facts.management
    ips = [str(a.ip) for a in (mgmt.address, mgmt.address6) if a is not None]
    out: list[tuple[str, object]] = []
    probe = ctx.bootcheck
    if probe is not None and hasattr(probe, "media"):
        def media() -> str:
            liveimgs = {m.name: m.liveimg for m in ctx.store.list_media() if m.liveimg}
            return probe.media(node, liveimgs)
        out.append(("media", media))
    out += [("bmc", lambda: bmc(ctx, node)),
            ("ipa", lambda: describe_dns(ctx.ipa.dns_plan(node.fqdn, ips), node.fqdn)),
            ("satellite", lambda: ctx.satellite.preflight(node.fqdn)),
            ("engine", lambda: engine(ctx, node))]
    return out


def run_check(system: str, fn) -> Row:
    try:
        return Row(system, True, fn())
    except ProvisionError as exc:
        return Row(system, False, str(exc))
    except Exception as exc:  # noqa: BLE001 - a check reports, it does not crash the gate
        return Row(system, False, f"{type(exc).__name__}: {exc}")


def rows(ctx: Services, node) -> list[Row]:
    """One row per system, in turn; a system that cannot be asked is a failed row naming why."""
    return [run_check(system, fn) for system, fn in checks(ctx, node)]


def rows_of_many(ctx: Services, nodes: list, deadline: float = 8.0, workers: int = 16) -> dict[str, list[Row]]:
    """The rows of many nodes at once (a plan of a whole cluster), at most `workers` checks at a time;
    one still running at `deadline` seconds is a failed row saying so (preflight waits its full
    timeouts). Daemon threads: a dry run ends at its deadline, not when a dead BMC's timeouts do."""
    import threading
    import time

    slots = threading.BoundedSemaphore(workers)
    jobs = [(n.name, system, fn) for n in nodes for system, fn in checks(ctx, n)]
    results: dict[int, Row] = {}
    done = [threading.Event() for _ in jobs]

    def work(i: int, system: str, fn) -> None:
        with slots:
            results[i] = run_check(system, fn)
        done[i].set()

    for i, (_, system, fn) in enumerate(jobs):
        threading.Thread(target=work, args=(i, system, fn), name=f"gate-{i}", daemon=True).start()
    end = time.monotonic() + deadline
    out: dict[str, list[Row]] = {n.name: [] for n in nodes}
    for i, (name, system, _) in enumerate(jobs):
        if done[i].wait(max(0.0, end - time.monotonic())):
            out[name].append(results[i])
        else:
            out[name].append(Row(system, False, f"no answer within {deadline:.0f} s (preflight waits its full timeouts)"))
    return out


def bmc(ctx: Services, node) -> str:
    driver = ctx.power(node)
    driver.validate()
    if node.bmc.driver != "redfish":
        return f"{node.bmc.label} answers: power {driver.get_power_state()}"
    info = driver.check(uefi=node.facts.firmware == "uefi", device="cd" if node.bmc.boot == "vmedia" else "network")
    if info["problems"]:
        raise ProvisionError(f"BMC {node.bmc.label}: " + "; ".join(info["problems"]))
    cds = [m for m, types in info["virtual_media"] if "CD" in types or "DVD" in types]
    return (f"BMC {node.bmc.label} ({info['vendor'] or 'Redfish'}): power {info['power']}, boot targets "
            f"{', '.join(info['boot_targets']) or '-'}, CD virtual media {', '.join(cds) or 'none'} under "
            f"{info['media_home']}; netboot: " + "; ".join(info["plan"]))


def engine(ctx: Services, node) -> str:
    if not ctx.engine.cluster_exists(node.cluster):
        raise ProvisionError(f"the engine has no cluster {node.cluster} to add {node.name} back into")
    return f"cluster {node.cluster} exists"


def passed(ctx: Services, node) -> list[tuple[str, str]]:
    """Preflight's gate: the rows as events, or a ProvisionError naming every row that failed."""
    checked = rows(ctx, node)
    failed = [r for r in checked if not r.ok]
    if failed:
        raise ProvisionError(f"node {node.name}: not retired, nothing was changed: "
                             + "; ".join(f"{r.system}: {r.detail}" for r in failed))
    return [("preflight", f"{r.system}: {r.detail}") for r in checked]
