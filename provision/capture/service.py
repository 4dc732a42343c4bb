"""Capture as operations: from the engine, from the node (collector upload), from a file;
each stores a new snapshot (when the facts changed) and reports the differences."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.sources import from_node
from ..domain import Facts, Node
from ..errors import InputError, NotFound, ProvisionError
from .diff import Change, diff
from .engine import facts_from_engine
from .node import facts_from_node, warnings

if TYPE_CHECKING:  # services builds what steps use: it imports this package
    from ..services import Services


def _previous(ctx: Services, name: str) -> Facts | None:
    try:
        return ctx.store.snapshot(name).facts
    except NotFound:
        return None


def store(ctx: Services, name: str, facts: Facts, source: str) -> tuple[int, list[Change]]:
    """Keep `facts` as a new snapshot unless they equal the latest; (snapshot id, changes)."""
    prev = _previous(ctx, name)
    changes = diff(prev, facts) if prev else []
    if prev is not None and prev.model_dump(mode="json") == facts.model_dump(mode="json"):
        return ctx.store.snapshot(name).id, []
    snap = ctx.store.add_snapshot(name, facts, source)
    ctx.store.add_event(name, "capture", f"facts snapshot #{snap.id} from {source}"
                        + (f": {len(changes)} change(s)" if prev else ""))
    return snap.id, changes


def from_engine(ctx: Services, name: str) -> Facts:
    node = ctx.store.get(name).node
    host = ctx.engine.find_host(node.name)
    if host is None:
        raise ProvisionError(f"node {name}: the engine does not know host {node.name}")
    raw = ctx.engine.host_network_json(host.id)
    if raw is None:
        raise ProvisionError(f"node {name}: this engine cannot report host NICs")
    return facts_from_engine(raw, _previous(ctx, name))


def from_file(inventory_nodes: list[Node], name: str) -> Facts:
    node = next((n for n in inventory_nodes if n.name == name), None)
    if node is None or node.facts is None:
        raise InputError(f"node {name}: no inline facts in that file")
    return node.facts


def collector_script(ctx: Services, env, token: str) -> str | None:
    name = ctx.store.collection_node(token) if token else None
    if name is None:
        return None
    node = ctx.store.get(name).node
    return env.get_template("collect.sh.j2").render(
        node={"fqdn": node.fqdn}, post_url=f"{ctx.cfg.server.public_url}/api/v1/collect/{token}")


def accept_upload(ctx: Services, token: str, text: str, remote_addr: str | None = None) -> tuple[int, dict]:
    """The upload must come from one of the node's known addresses (when it has any); one from
    elsewhere, or one that does not parse, is refused without using up the token."""
    name = ctx.store.collection_node(token)
    if name is None:
        return 403, {"error": "unknown, used or expired token"}
    prev = _previous(ctx, name)
    known = [a.ip for a in prev.addresses()] if prev else []
    if remote_addr is not None and known and not from_node(remote_addr, known, ctx.cfg.server.collect_sources):
        ctx.denials.tell(ctx.store.add_event, name, "capture-denied",
                         f"collector upload from {remote_addr}: not the node's address")
        return 403, {"error": "not accepted from this address"}
    try:  # parsed before the token is used up: a malformed upload can be sent again, fixed
        facts = facts_from_node(text, prev)
    except InputError as exc:
        ctx.store.add_event(name, "capture-failed", str(exc))
        return 422, {"error": str(exc)}
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:  # malformed, never a 500
        ctx.store.add_event(name, "capture-failed", f"malformed upload: {type(exc).__name__}")
        return 422, {"error": f"node capture: malformed upload ({type(exc).__name__}: {exc})"[:300]}
    if ctx.store.collection_node(token, consume=True) is None:
        return 403, {"error": "unknown, used or expired token"}
    try:
        snap_id, changes = store(ctx, name, facts, "node")
    except InputError as exc:  # e.g. a MAC or IP that another node owns: nothing stored
        ctx.store.add_event(name, "capture-failed", str(exc))
        return 422, {"error": str(exc)}
    said = warnings(text)  # bounded: the first MAX_WARNINGS and a count, in one write
    if said:
        ctx.store.record_step(name, {}, [("capture-warning", w) for w in said])
    return 200, {"node": name, "snapshot": snap_id, "changes": [c.text for c in changes], "warnings": said}
