"""Static check of the shell in a rendered kickstart (%pre, %post, %onerror, and the first-boot
script written from %post): every call of a tool listed in target-tools.yaml may use only the
options that tool has on the oldest target (EL8 for installs). `provision render --check` runs it,
so a script that a real node's older curl or ip would reject is caught before a wipe."""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path

import yaml

SPEC = Path(__file__).parent / "target-tools.yaml"
_SEP = {"|", "||", "&&", ";", "then", "do", "else", "!", "if", "until", "while", "{", "(", "$("}


@cache
def _spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def tool_options(tool: str, target: str) -> dict | None:
    spec = _spec().get(tool)
    if spec is None:
        return None
    if "el7" in spec or "el8" in spec:
        return spec.get(target) or spec.get("el8")  # a tool only listed for EL8 is EL8's on EL7 too
    return spec


def check_args(spec: dict, args: list[str]) -> str | None:
    """None if every option is one the target's tool has, else what is wrong."""
    flags, with_arg = set(spec.get("flags", [])), set(spec.get("with_arg", []))
    values = spec.get("values", {})

    def bad_value(opt: str, val: str) -> str | None:
        allowed = values.get(opt)
        if allowed is None:
            return None
        wrong = [v for v in val.split(",") if v not in allowed]
        return f"option {opt}: unknown value(s) {','.join(wrong)}" if wrong else None

    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            break
        if not a.startswith("-") or a == "-":
            if spec.get("positional_stop"):
                break
            i += 1
            continue
        if a.startswith("--") or (spec.get("single_dash_long") and len(a) > 2):
            name, eq, given = a.partition("=")
            val: str | None = given
            if name in flags and not eq:
                pass
            elif name in with_arg:
                if not eq:
                    i, val = i + 1, (args[i + 1] if i + 1 < len(args) else None)
                problem = f"option {name} needs a value" if val is None else bad_value(name, val)
                if problem:
                    return problem
            else:
                return f"unknown option {name}"
        else:
            j = 1
            while j < len(a):
                opt = "-" + a[j]
                if opt in flags:
                    j += 1
                    continue
                if opt in with_arg:
                    val = a[j + 1:]
                    if not val:
                        i, val = i + 1, (args[i + 1] if i + 1 < len(args) else None)
                    problem = f"option {opt} needs a value" if val is None else bad_value(opt, val)
                    if problem:
                        return problem
                    break
                return f"unknown option {opt}"
        i += 1
    return None


def check_scripts(kickstart: str, target: str = "el8") -> list[str]:
    """Problems with tool options in the kickstart's script sections, each naming line and tool."""
    problems = []
    inside = False
    lines = kickstart.splitlines()
    joined: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        if re.match(r"^%(pre|post|onerror)\b", line):
            inside = True
            continue
        if line.strip() == "%end":
            inside = False
            continue
        if inside:
            if joined and joined[-1][1].endswith("\\"):
                joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + line)
            else:
                joined.append((n, line))
    for n, line in joined:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, word in enumerate(words):
            spec = tool_options(word, target)
            if spec is None or spec.get("passthrough") or (i and words[i - 1] not in _SEP and not
                                                            words[i - 1].endswith((";", "$("))):
                continue
            args = []
            for w in words[i + 1:]:
                if w in _SEP or w.startswith((">", "<", "2>", "1>")) or w.endswith((";", ")")):
                    break
                args.append(w)
            problem = check_args(spec, args)
            if problem:
                problems.append(f"line {n}: {word}: {problem} ({spec.get('version', word)}, the oldest target)")
    return problems
