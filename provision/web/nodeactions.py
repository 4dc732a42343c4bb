"""The node page's actions: check, capture (from the engine), retry, power on / off / cycle, and
boot from the network once. Each needs its role (check: viewer, the rest: operator) and a
confirmation that names the node (the form sends the name back, the server compares it); each is
one row in the audit trail. Power changes are refused while a run has the node."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for

from ..capture import service as capture
from ..errors import Conflict, InputError
from ..integrations.directory import at_least
from ..workflow import submit
from ..workflow.nodecheck import run_checks
from .auth import principal
from .deps import services
from .rebuilds import wake_conductor

# action -> (role, what the confirmation says, what it tells when done)
ACTIONS = {
    "check": ("viewer", "Run every preflight check of {node}? Nothing is changed.", None),
    "capture": ("operator", "Capture {node}'s facts from the engine into a new snapshot?", None),
    "retry": ("operator", "Retry {node}'s rebuild at {step}?", None),
    "power-on": ("operator", "Power on {node} through its BMC ({bmc})?", "{node}: powered on"),
    "power-off": ("operator", "Power OFF {node} through its BMC ({bmc})? Whatever runs on it stops at once.",
                  "{node}: powered off"),
    "power-cycle": ("operator", "Power-cycle {node} through its BMC ({bmc})? Whatever runs on it stops at once.",
                    "{node}: power-cycled"),
    "boot-installer": ("operator", "Make {node} boot from the network once, at its next boot ({bmc})?",
                       "{node}: boots from the network once, at its next boot (the installer while a build is "
                       "armed, its local disk otherwise)"),
}
_POWER = {"power-on": "on", "power-off": "off", "power-cycle": "cycle"}


def offered(name: str, rec) -> list[dict]:
    """The actions the node page shows: (action, label, role, confirmation)."""
    who = principal()
    step = submit.retry_at(services().store, name)
    out = []
    for action, (role, confirm, _done) in ACTIONS.items():
        if action == "retry" and step is None:
            continue
        label = {"check": "Check", "capture": "Capture facts (engine)", "retry": f"Retry at {step}",
                 "power-on": "Power on", "power-off": "Power off", "power-cycle": "Power cycle",
                 "boot-installer": "Boot installer once"}[action]
        out.append({"action": action, "label": label, "role": role,
                    "allowed": who is not None and at_least(who.role, role),
                    "confirm": confirm.format(node=name, bmc=rec.node.bmc.label, step=step)})
    return out


def act(name: str, action: str):
    """POST /nodes/<name>/do/<action>: check the role and the confirmation, then do it. The check
    renders the node page with its table; the others go back to it with a message."""
    from .ui import node_page  # the page this action belongs to

    if action not in ACTIONS:
        abort(404)
    role = ACTIONS[action][0]
    who = principal()
    if who is None or not at_least(who.role, role):
        abort(403, description=f"{action} needs the {role} role")
    s = services()
    rec = s.store.get(name)  # NotFound: 404
    if request.form.get("confirm") != name:
        raise InputError(f"confirm: the node's name ({name}) must come back with the form; nothing was done")
    if action == "check":
        return node_page(name, checks=run_checks(s, name))
    if action == "capture":
        snap_id, changes = capture.store(s, name, capture.from_engine(s, name), "engine")
        flash(f"{name}: facts snapshot #{snap_id} (engine): "
              + (f"{len(changes)} change(s)" + (", DRIFT" if any(c.drift for c in changes) else "")
                 if changes else "no changes"))
    elif action == "retry":
        names = submit.select(s.store, [name], None)
        submit.check_rebuildable(s.store, names, False, retry=True)
        run = s.store.create_rebuild(names, {"max_parallel": 1, "min_up": None, "canary": 0, "retry": True},
                                     runner="service")
        wake_conductor()
        return redirect(url_for("ui.run", run_id=run.id))
    else:
        busy = s.store.busy_nodes().get(name)
        if busy is not None:
            raise Conflict(f"node {name} is in rebuild {busy}, which drives its power: pause or abort the run first")
        driver = s.power(rec.node)
        if action == "boot-installer":
            if rec.node.bmc.boot == "vmedia":
                raise InputError(f"node {name}: bmc.boot is vmedia: it boots the installer from virtual media, "
                                 "during a rebuild only")
            uefi = rec.node.facts is not None and rec.node.facts.firmware == "uefi"
            driver.set_boot_device("network", persistent=False, uefi=uefi)
        else:
            driver.set_power_state(_POWER[action])
        flash(str(ACTIONS[action][2]).format(node=name))
    return redirect(url_for("ui.node", name=name))
