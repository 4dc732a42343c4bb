"""Stub tools for running the scripts we render (kickstart %post/%onerror, the first-boot unit,
the collector) under dash as the oldest target would: each stub accepts only the options listed
for that target in provision/render/target-tools.yaml and exits 2 on any other, records every call
(posted files included), can be made to fail (`STUB_FAIL=tool` or `tool@N` for its Nth call),
prints canned output for a command line, and answers curl from canned responses (or runs the
real tool: `passthrough`, and `STUB_REAL=curl` for a real server).

Run as `python stubtools.py TOOL ARGS...` by the one-line sh wrappers that make_stubs writes."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

# provision/render/scripts.py loaded by path: a stub runs once per tool call, and importing the
# provision package (pydantic, jinja2, ...) would cost more than the call it stands in for
_spec = importlib.util.spec_from_file_location(
    "provision_render_scripts", Path(__file__).resolve().parents[1] / "provision" / "render" / "scripts.py")
_scripts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_scripts)
SPEC, check_args, tool_spec, load_spec = _scripts.SPEC, _scripts.check_args, _scripts.tool_options, _scripts._spec



@dataclass
class Stubs:
    dir: Path
    bin: Path
    target: str
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.dir / "calls.jsonl"

    def calls(self, tool: str | None = None) -> list[dict]:
        if not self.log.exists():
            return []
        out = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [c for c in out if tool is None or c["tool"] == tool]

    def respond(self, name: str, body: str, status: int = 200) -> None:
        """curl's answer for a URL whose last path segment is `name`."""
        (self.dir / "responses").mkdir(exist_ok=True)
        (self.dir / "responses" / name).write_text(json.dumps({"status": status, "body": body}))

    def output(self, command: str, text: str) -> None:
        """What `command` (tool and args joined by spaces) prints."""
        self.outputs[command] = text
        (self.dir / "outputs.json").write_text(json.dumps(self.outputs))

    def env(self, fail: str = "", real: str = "", **extra: str) -> dict:
        path = f"{self.bin}:/usr/bin:/bin:/usr/sbin:/sbin:{os.environ.get('PATH', '')}"
        return dict(os.environ, PATH=path, STUB_DIR=str(self.dir), STUB_TARGET=self.target, STUB_FAIL=fail,
                    STUB_REAL=real, STUB_STUBBIN=str(self.bin), **extra)

    def clear(self) -> None:
        self.log.unlink(missing_ok=True)


def make_stubs(root: Path, target: str) -> Stubs:
    """A bin/ with a stub for every tool in the spec (and nothing else of ours) for `target`.
    Passthrough tools get a plain sh wrapper (log, then the real tool) unless made to fail."""
    d = root / f"stubs-{target}"
    (d / "bin").mkdir(parents=True, exist_ok=True)
    me = Path(__file__).resolve()
    system = os.pathsep.join(["/usr/bin", "/bin", "/usr/sbin", "/sbin", os.environ.get("PATH", "")])
    for tool, spec in load_spec().items():
        p = d / "bin" / tool
        stub = f'exec "{sys.executable}" "{me}" {tool} "$@"'
        real = shutil.which(tool, path=system) if spec.get("passthrough") else None
        if real:
            p.write_text(f'#!/bin/sh\ncase ",$STUB_FAIL," in *",{tool},"*|*",{tool}@"*) {stub};; esac\n'
                         f'echo \'{{"tool": "{tool}", "args": []}}\' >> "$STUB_DIR/calls.jsonl"\n'
                         f'exec {shlex.quote(real)} "$@"\n')
        else:
            p.write_text(f"#!/bin/sh\n{stub}\n")
        p.chmod(0o755)
    s = Stubs(d, d / "bin", target)
    (d / "outputs.json").write_text("{}")
    return s


def _real(tool: str) -> str:
    stubbin = os.environ.get("STUB_STUBBIN", "")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != stubbin)
    found = shutil.which(tool, path=path)
    if not found:
        sys.exit(f"stub {tool}: no real {tool} on this machine")
    return found


def _failing(tool: str, d: Path) -> bool:
    calls = sum(1 for line in (d / "calls.jsonl").read_text().splitlines() if json.loads(line)["tool"] == tool)
    for item in filter(None, os.environ.get("STUB_FAIL", "").split(",")):
        name, _, nth = item.partition("@")
        if name == tool and (not nth or int(nth) == calls):
            return True
    return False


def _curl(args: list[str], d: Path) -> int:
    url = next((a for a in args if a.startswith(("http://", "https://"))), "")
    name = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    resp = d / "responses" / name
    answer = json.loads(resp.read_text()) if resp.exists() else {"status": 404, "body": "not found"}
    if answer["status"] >= 400 and any(a in ("-f", "--fail") or (a.startswith("-") and not a.startswith("--")
                                       and "f" in a[1:]) for a in args):
        print(f"curl: (22) The requested URL returned error: {answer['status']}", file=sys.stderr)
        return 22
    out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-o", "--output")), None)
    if out:
        Path(out).write_text(answer["body"])
    else:
        sys.stdout.write(answer["body"])
    return 0


def main() -> None:
    tool, args = sys.argv[1], sys.argv[2:]
    d, target = Path(os.environ["STUB_DIR"]), os.environ["STUB_TARGET"]
    spec = tool_spec(tool, target) or {}
    entry: dict = {"tool": tool, "args": args}
    problem = None if spec.get("passthrough") else check_args(spec, args)
    if problem:
        entry["rejected"] = problem
    if tool == "curl":  # keep what was posted: tests assert on the log a `failed` callback carries
        for i, a in enumerate(args[:-1]):
            if a in ("--data-binary", "-d", "--data") and args[i + 1].startswith("@"):
                try:
                    entry["data"] = Path(args[i + 1][1:]).read_text(errors="replace")
                except OSError as exc:
                    entry["data_error"] = str(exc)
    with open(d / "calls.jsonl", "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    if problem:
        print(f"{tool}: {problem} (stub of {spec.get('version', tool)} for {target})", file=sys.stderr)
        sys.exit(2)
    if _failing(tool, d):
        print(f"{tool}: injected failure", file=sys.stderr)
        sys.exit(22 if tool == "curl" else 1)
    if spec.get("passthrough") or tool in os.environ.get("STUB_REAL", "").split(","):
        os.execv(_real(tool), [tool, *args])
    if tool == "curl":
        sys.exit(_curl(args, d))
    outputs = json.loads((d / "outputs.json").read_text())
    key = " ".join([tool, *args])
    if key in outputs:
        sys.stdout.write(outputs[key])
    elif tool in ("ip", "lsblk", "pvs", "dmidecode"):  # readers with no canned answer: say so
        print(f"stub {tool}: no canned output for: {key}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
