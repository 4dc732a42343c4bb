"""Parse and validate an inventory: every node alone, then across nodes (names, MACs, IPs)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import yaml
from pydantic import ValidationError

from ..errors import InputError
from .facts import Facts
from .node import Node

MAX_BYTES = 16 * 1024 * 1024
SECRET_WORDS = ("password", "secret", "token", "otp")
_SUBFIELD = re.compile(r"^([a-z_0-9]+(?:\[\d+\])?(?:\.[a-z_0-9]+)?): ")


def format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per pydantic error: 'prefix field.path: message' — input values are never echoed."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        last = str(err["loc"][-1]) if err["loc"] else ""
        if err["type"] == "extra_forbidden":
            msg = ("inline secrets are not accepted; give a *_file path instead"
                   if any(w in last.lower() for w in SECRET_WORDS) else "unknown field")
        sub = _SUBFIELD.match(msg)
        if sub and path:  # a model-level check that names its sub-field: 'facts' + 'bonds[0].slaves: ...'
            path, msg = f"{path}.{sub.group(1)}", msg[sub.end():]
        where = f"{prefix}{path}" if path else prefix.rstrip(": .") or "value"
        lines.append(f"{where}: {msg}")
    return lines


def load_yaml(text: str, source: str) -> object:
    if len(text.encode()) > MAX_BYTES:
        raise InputError(f"{source}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}") from None


def parse_nodes(data: object, source: str = "inventory") -> list[Node]:
    """Validate `{nodes: [...]}`; raise InputError listing every problem, naming node and field."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise InputError(f"{source}: expected a mapping with a 'nodes:' list")
    extra = set(data) - {"nodes"}
    if extra:
        raise InputError(f"{source}: unknown top-level keys {sorted(extra)}")
    errors: list[str] = []
    nodes: list[Node] = []
    for i, raw in enumerate(data["nodes"]):
        label = f"nodes[{i}]"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str) and len(raw["name"]) <= 63:
            label += f" ({raw['name']!r})".replace("\\n", "\\\\n")
        try:
            nodes.append(Node.model_validate(raw))
        except ValidationError as exc:
            errors.extend(format_errors(exc, f"{label}: "))
    if errors:
        raise InputError("\n".join(errors))
    check_unique(nodes, [])
    return nodes


def check_unique(nodes: list[Node], others: Iterable[tuple[str, str, Facts | None]]) -> None:
    """Names, FQDNs, MACs and IPs must be unique across the new nodes and `others`
    (name, fqdn, facts) stored under names the new nodes do not replace."""
    owners: dict[tuple[str, str], str] = {}
    errors: set[str] = set()

    def claim(kind: str, value: str, node: str) -> None:
        owner = owners.setdefault((kind, value), node)
        if owner != node:
            errors.add(f"node {node!r}: {kind} {value} is also used by node {owner!r}")

    def claim_all(name: str, fqdn: str, facts: Facts | None) -> None:
        claim("fqdn", fqdn, name)
        for mac in facts.macs() if facts else []:
            claim("MAC", mac, name)
        for addr in facts.addresses() if facts else []:
            claim("IP address", str(addr.ip), name)

    for name, fqdn, facts in others:
        claim_all(name, fqdn, facts)
    seen: set[str] = set()
    for node in nodes:
        if node.name in seen:
            errors.add(f"node {node.name!r}: name appears twice in the inventory")
        seen.add(node.name)
        claim_all(node.name, node.fqdn, node.facts)
    if errors:
        raise InputError("\n".join(sorted(errors)))
