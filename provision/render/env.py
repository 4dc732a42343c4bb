"""The one Jinja2 environment: sandboxed, StrictUndefined, no autoescape (outputs are not HTML)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment


def make_env(templates_root: Path) -> SandboxedEnvironment:
    root = Path(templates_root)
    return SandboxedEnvironment(
        loader=FileSystemLoader([str(root / "kickstarts"), str(root / "bootfiles")]),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
