"""Parse and validate an inventory: every node alone, then across nodes (names, MACs, IPs)."""

from __future__ import annotations

import contextlib
import gc
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


MAX_DEPTH = 64  # nesting of mappings and lists
MAX_NODES = 2_000_000  # YAML nodes once aliases are expanded (a "billion laughs" document stops here)


_LIBYAML = getattr(yaml, "__with_libyaml__", False)  # PyPI's PyYAML wheels include it


def _prescan(text: str) -> bool:
    """libyaml's composer recurses in C without a bound (a deeply nested document crashes the
    process), so the nesting is first checked on libyaml's event stream, which stops at the first
    event too deep. Returns whether the document uses aliases."""
    from yaml._yaml import CParser

    parser = CParser(text)
    depth, aliases = 0, False
    opening, closing = (yaml.MappingStartEvent, yaml.SequenceStartEvent), (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    try:
        while (ev := parser.get_event()) is not None:
            cls = type(ev)
            if cls in opening:
                depth += 1
                if depth > MAX_DEPTH:
                    raise _Refused(f"nested deeper than {MAX_DEPTH} levels", ev.start_mark)
            elif cls in closing:
                depth -= 1
            elif cls is yaml.AliasEvent:
                aliases = True
    finally:
        parser.dispose()
    return aliases


@contextlib.contextmanager
def no_gc():
    """Building a large inventory creates ~100 objects per node that all stay alive: the cyclic
    collector's repeated passes over them cost more than the parse (5,000 nodes: 6 s of 8)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _StrictLoader(yaml.CSafeLoader if _LIBYAML else yaml.SafeLoader):  # type: ignore[misc]
    """A safe loader that refuses duplicate keys (YAML says they are an error; PyYAML keeps the
    last), nesting deeper than MAX_DEPTH and documents that expand past MAX_NODES through aliases."""

    def compose_node(self, parent, index):  # PyYAML's own composer only (no libyaml)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            if self.check_event(yaml.AliasEvent):
                self.aliases = True  # only then can the document expand past its size
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise _Refused(f"duplicate key {str(key)[:60]!r} (first at line {seen[key]})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
            except TypeError:
                pass  # an unhashable key: SafeLoader's own error follows
        return super().construct_mapping(node, deep=deep)


class _Refused(yaml.YAMLError):
    def __init__(self, problem: str, mark) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


def _expanded_size(node, memo: dict) -> int:
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a cycle counts once
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size
    return size


def read_text(path, source: str) -> str:
    """A file's text for load_yaml: bounded in size, UTF-8 or a clear error (never a traceback)."""
    from pathlib import Path

    try:
        with Path(path).open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise InputError(f"{source}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text (byte {exc.start})") from None


def load_yaml(text: str, source: str) -> object:
    """Parse YAML strictly. Errors name the line and column but never echo the source text (a
    mis-pasted secret must not land in a terminal or a log)."""
    if len(text.encode()) > MAX_BYTES:
        raise InputError(f"{source}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        with no_gc():
            aliases = _prescan(text) if _LIBYAML else True
        loader = _StrictLoader(text)
        try:
            with no_gc():
                node = loader.get_single_node()
                if node is None:
                    return None
                if (aliases or getattr(loader, "aliases", False)) and _expanded_size(node, {}) > MAX_NODES:
                    raise _Refused(f"expands to more than {MAX_NODES} values (aliases)", node.start_mark)
                return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(p for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p) or "syntax error"
        raise InputError(f"{source}: not valid YAML{where}: {what}") from None
    except RecursionError:
        raise InputError(f"{source}: not valid YAML: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # a date like 2001-02-30, an integer of 5,000 digits
        # only the message's first part: the rest may quote the value, and a value may be a secret
        raise InputError(f"{source}: not valid YAML: a value cannot be read ({str(exc).split(':')[0]})") from None


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


def check_unique(nodes: list[Node], others: Iterable[tuple[str, str, Facts | None]],
                 claimed: Iterable[tuple[str, str, str]] = ()) -> None:
    """Names, FQDNs, MACs and IPs must be unique across the new nodes and `others`
    (name, fqdn, facts) stored under names the new nodes do not replace; `claimed` holds stored
    (kind, value, owner) addresses of such nodes, as the store indexes them."""
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
    for kind, value, owner in claimed:
        claim(kind, value, owner)
    seen: set[str] = set()
    for node in nodes:
        if node.name in seen:
            errors.add(f"node {node.name!r}: name appears twice in the inventory")
        seen.add(node.name)
        claim_all(node.name, node.fqdn, node.facts)
    if errors:
        raise InputError("\n".join(sorted(errors)))
