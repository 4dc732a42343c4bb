"""The oVirt REST API v4 as published in ovirt-engine-sdk-python (a test-only dependency), used by
the fake engine to refuse any request the real API does not have:

- the service tree, from `ovirtsdk4.services` (SystemService.service(path) walks it as the SDK does;
  an id selects an entity of a collection);
- each method's parameters, from the SDK method signatures: GET on a collection is `list`, on an
  entity `get`; POST on a collection `add`, on `<entity>/<action>` the method whose body calls
  `_internal_action(action, '<action>', ...)`; PUT `update`; DELETE `remove`. Parameters other
  than the body become URL query parameters; an action's parameters are members of its Action body;
- the members of every type, from `ovirtsdk4.writers` (what the SDK itself writes): scalars,
  nested objects (`XWriter.write_one`) and lists (`XWriter.write_many(..., 'singular', 'plural')`,
  which REST JSON shows as {"plural": {"singular": [...]}}).

Only `/sso/...` (the SSO service, oVirt SSO docs) and `/services/pki-resource` (the PKI resource
servlet) live outside the API model."""

from __future__ import annotations

import inspect
import re
from functools import cache

import ovirtsdk4.services as services
import ovirtsdk4.writers as writers

_SKIP = {"self", "headers", "query", "wait", "kwargs"}


@cache
def members() -> dict[str, dict]:
    """{type name: {member: None (scalar) | ("one", type) | ("many", type, singular)}}."""
    out: dict[str, dict] = {}
    current = None
    for line in inspect.getsource(writers).splitlines():
        m = re.match(r"class (\w+)Writer\(Writer\):", line)
        if m:
            current = out.setdefault(m.group(1), {})
            continue
        if current is None:
            continue
        if m := re.search(r"(\w+)Writer\.write_many\(obj\.\w+, writer, '(\w+)', '(\w+)'\)", line):
            current[m.group(3)] = ("many", m.group(1), m.group(2))
        elif m := re.search(r"(\w+)Writer\.write_one\(obj\.\w+, writer, '(\w+)'\)", line):
            current[m.group(2)] = ("one", m.group(1))
        elif m := re.search(r"Writer\.write_\w+\(writer, '(\w+)'", line):
            current[m.group(1)] = None
        elif m := re.search(r"writer\.write_(?:attribute|start)\('(\w+)'", line):
            current.setdefault(m.group(1), None)
    return out


def check_body(type_name: str, body, where: str = "") -> list[str]:
    spec = members().get(type_name)
    if spec is None:
        return [f"{where or 'body'}: no type {type_name} in the model"]
    if not isinstance(body, dict):
        return [f"{where or 'body'}: {type_name} must be an object"]
    problems = []
    for key, value in body.items():
        if key not in spec:
            problems.append(f"{where}{key}: not a member of {type_name}")
            continue
        kind = spec[key]
        if kind is None or value is None:
            continue
        if kind[0] == "one":
            problems += check_body(kind[1], value, f"{where}{key}.")
        else:
            if not isinstance(value, dict) or set(value) - {kind[2]}:
                problems.append(f"{where}{key}: a list of {kind[1]} is {{\"{kind[2]}\": [...]}}")
                continue
            for i, item in enumerate(value.get(kind[2], [])):
                problems += check_body(kind[1], item, f"{where}{key}.{kind[2]}[{i}].")
    return problems


def _params(method) -> list[str]:
    return [("async" if p == "async_" else p) for p in inspect.signature(method).parameters if p not in _SKIP]


def _action_method(service, name: str):
    for attr in dir(type(service)):
        fn = getattr(type(service), attr)
        if callable(fn) and not attr.startswith("_"):
            try:
                src = inspect.getsource(fn)
            except (OSError, TypeError):
                continue
            if f"_internal_action(action, '{name}'" in src:
                return getattr(service, attr)
    return None


def check_request(method: str, path: str, query: dict, body) -> list[str]:
    """Problems with `METHOD /api<path>?query` + JSON body against the model ([] if it is in the API)."""
    segments = [s for s in path.strip("/").split("/") if s]
    service = services.SystemService(None, "")
    rest = []
    for i, seg in enumerate(segments):
        try:
            service = service.service(seg)
        except Exception:
            rest = segments[i:]
            break
    name = type(service).__name__
    if len(rest) > 1:
        return [f"{method} {path}: no service {'/'.join(rest)} under {name}"]
    if rest:
        fn = _action_method(service, rest[0]) if method == "POST" else None
        if fn is None:
            return [f"{method} {path}: {name} has no action {rest[0]!r}"]
        params = _params(fn)
        problems = [f"{method} {path}: query parameter {q!r} is not one of {name}.{fn.__name__}'s"
                    for q in query if q not in ("async",)]
        if isinstance(body, dict):
            problems += [f"{method} {path}: {k!r} is not a parameter of {name}.{fn.__name__}"
                         for k in body if k not in params]
            problems += check_body("Action", body)
        return problems
    is_collection = hasattr(service, "list") or (hasattr(service, "add") and not hasattr(service, "get"))
    verb = {"GET": "list" if is_collection else "get", "POST": "add", "PUT": "update", "DELETE": "remove"}.get(method)
    fn = getattr(service, verb, None) if verb else None
    if fn is None:
        return [f"{method} {path}: {name} has no {verb or method} method"]
    params = _params(fn)
    body_param = params[0] if verb in ("add", "update") else None
    problems = [f"{method} {path}: query parameter {q!r} is not one of {name}.{verb}'s ({', '.join(params)})"
                for q in query if q not in params or q == body_param]
    if body_param:
        type_name = "".join(w.capitalize() for w in body_param.split("_"))
        problems += [f"{method} {path}: {p}" for p in check_body(type_name, body if body is not None else {})]
    return problems
