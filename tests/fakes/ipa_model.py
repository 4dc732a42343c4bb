"""FreeIPA's command schemas as shipped in the `ipaclient` package (remote_plugins/2_164: the newest
static schema it ships, API 2.164; newer servers keep these commands and options), read with `ast`
so nothing of ipaclient is imported: for each command its positional args and its options. Every
command also takes `version` (added by ipalib's framework). Used by the fake IPA to refuse calls
the real server would refuse: ipalib.errors CommandError (905) and OptionError (3005)."""

from __future__ import annotations

import ast
import importlib.util
from functools import cache
from pathlib import Path

SCHEMA = "2_164"


def _schema_dir() -> Path:
    spec = importlib.util.find_spec("ipaclient")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("ipaclient is not installed: `make test` installs it (--no-deps) for its schemas")
    return Path(spec.submodule_search_locations[0]) / "remote_plugins" / SCHEMA


@cache
def commands() -> dict[str, tuple[list[str], set[str]]]:
    out = {}
    for f in sorted(_schema_dir().glob("*.py")):
        for node in ast.parse(f.read_text()).body:
            if not (isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "Method" for b in node.bases)):
                continue
            args, opts = [], {"version"}
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and getattr(stmt.targets[0], "id", "") in ("takes_args", "takes_options"):
                    for call in stmt.value.elts:
                        if isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant):
                            name = str(call.args[0].value).rstrip("*+?")
                            (args.append(name) if stmt.targets[0].id == "takes_args" else opts.add(name))
            out[node.name] = (args, opts)
    return out


def check_call(method: str, args: list, options: dict) -> dict | None:
    """None if the call fits the schema, else the error envelope IPA would answer."""
    cmd = commands().get(method)
    if cmd is None:
        return {"code": 905, "name": "CommandError", "message": f"unknown command '{method}'"}
    names, opts = cmd
    if len(args) > len(names):
        return {"code": 3004, "name": "MaxArgumentError", "message": f"command '{method}' takes at most "
                f"{len(names)} arguments"}
    unknown = sorted(set(options) - opts)
    if unknown:
        return {"code": 3005, "name": "OptionError", "message": f"Unknown option: {unknown[0]}"}
    return None
