"""A run's timeline (Gantt), drawn on the server as SVG: a row per node in start order, a bar per
step from its start to its end (to now while it runs), the failed ones marked, a time axis with
round ticks. The run page shows it inline and fetches it again as the run moves."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import render_template

from ..store import Rebuild, utcnow
from ..workflow import states as S
from ..workflow import timeline
from ..workflow.timeline import Span, duration

# one colour per step, told apart without colour too: every bar's title names its step
COLOURS = dict(zip(S.STEPS, ("#8da0cb", "#66c2a5", "#a6d854", "#ffd92f", "#e5c494", "#fc8d62", "#4e79a7",
                             "#b3b3b3", "#e78ac3"), strict=True))
LABEL, ROW, WIDTH, AXIS = 120, 18, 860, 22
_TICKS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def tick_step(span_seconds: float, most: int = 10) -> int:
    return next((t for t in _TICKS if span_seconds / t <= most), _TICKS[-1])


def figures(run: Rebuild, store, now: datetime | None = None) -> dict:
    """What the run page says of time: its spans by node, makespan so far, estimate to completion."""
    now = now or utcnow()
    by_node = timeline.run_spans(store, run)
    est = timeline.estimate(run, by_node, store.node_states(run.nodes), timeline.history_medians(store, run.nodes),
                            now=now)
    return {"spans": by_node, "estimate": est, "now": now,
            "makespan": duration(est.makespan) if est.started else "",
            "remaining": duration(est.remaining) if est.remaining is not None else "",
            "eta": (now + timedelta(seconds=est.remaining)).isoformat(timespec="minutes")
            if est.remaining is not None else "",
            "unknown": list(est.unknown)}


def svg(run: Rebuild, fig: dict) -> str:
    now, by_node = fig["now"], fig["spans"]
    every: list[Span] = [sp for v in by_node.values() for sp in v]
    t0 = min((sp.start for sp in every), default=run.created_at)
    end = run.finished_at if run.finished and run.finished_at else now
    t1 = max([end, *[(sp.end or end) for sp in every], t0 + timedelta(seconds=60)])
    total = (t1 - t0).total_seconds()

    def x(ts: datetime) -> float:
        return round(LABEL + (ts - t0).total_seconds() / total * WIDTH, 1)

    step = tick_step(total)
    ticks = [{"x": x(t0 + timedelta(seconds=s)), "label": duration(s) if s else "0"}
             for s in range(0, int(total) + 1, step)]
    rows = []
    for i, name in enumerate(run.nodes):
        bars = []
        for sp in by_node.get(name, []):
            left, right = x(sp.start), x(sp.end or end)
            bars.append({"x": left, "w": max(1.0, round(right - left, 1)), "step": sp.step, "outcome": sp.outcome,
                         "fill": "#d62728" if sp.outcome == "failed" else COLOURS.get(sp.step, "#999"),
                         "title": f"{name}: {sp.step} {sp.outcome}, {duration(sp.seconds(end))} "
                                  f"(from {sp.start.isoformat(timespec='seconds')})"})
        rows.append({"name": name, "y": AXIS + i * ROW, "bars": bars})
    height = AXIS + len(run.nodes) * ROW + 6
    return render_template("timeline.svg", rows=rows, ticks=ticks, width=LABEL + WIDTH + 10, height=height,
                           label=LABEL, row=ROW, axis=AXIS, now_x=x(end) if not run.finished else None,
                           colours=COLOURS, run=run)
