"""One row of `make bench`: the figure, provision's result, the peer's in the same run, their
ratio, the issue's target and whether it is met."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    figure: str
    ours: str
    peer: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None


def render(rows: list[Row]) -> str:
    head = ("figure", "provision", "peer (same run)", "ratio", "target", "met")
    table = [head] + [(r.figure, r.ours, r.peer, "" if r.ratio is None else f"{r.ratio:.2f}x", r.target,
                       "" if r.ok is None else ("yes" if r.ok else "NO")) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table)
