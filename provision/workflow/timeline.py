"""Where a rebuild's time went: each node's steps (start, end, duration, outcome) read back from
its state moves in the event log, the median duration of each step, and a run's makespan so far
and estimate to completion. The node page, the run page's timeline, the CLI's live display and
/metrics all read time from here."""

from __future__ import annotations

import heapq
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..store import Rebuild, utcnow
from . import states as S


@dataclass(frozen=True)
class Span:
    node: str
    step: str
    start: datetime
    end: datetime | None  # None: the node is in this step now
    outcome: str  # "ok", "failed", or "running"

    def seconds(self, now: datetime) -> float:
        return max(0.0, ((self.end or now) - self.start).total_seconds())


def spans(node: str, moves: list[tuple[datetime, str]]) -> list[Span]:
    """The steps a node went through, oldest first, from its (ts, message) state moves."""
    out: list[Span] = []
    open_: tuple[str, datetime] | None = None
    for ts, message in moves:
        move = S.parse_move(message)
        if move is None:
            continue
        _state, new, event = move
        if open_ is not None and event == "adopt" and new == open_[0]:
            continue  # a new run took the node over in the step it is in: the same step goes on
        if open_ is not None:
            out.append(Span(node, open_[0], open_[1], ts, "failed" if new == S.FAILED else "ok"))
            open_ = None
        if new in S.ACTIVE:
            open_ = (new, ts)
    if open_ is not None:
        out.append(Span(node, open_[0], open_[1], None, "running"))
    return out


def last_rebuild(node: str, moves: list[tuple[datetime, str]]) -> list[Span]:
    """The steps of the node's latest rebuild (from its last `start`, retries included)."""
    starts = [i for i, (_ts, m) in enumerate(moves) if (mv := S.parse_move(m)) and mv[2] == "start"]
    return spans(node, moves[starts[-1]:] if starts else moves)


def run_spans(store, run: Rebuild) -> dict[str, list[Span]]:
    """Every node's steps within a run (moves from the run's creation to its end)."""
    moves = store.transitions(run.nodes, since=run.created_at)
    end = run.finished_at
    return {n: spans(n, [(ts, m) for ts, m in moves[n] if end is None or ts <= end]) for n in run.nodes}


def medians(all_spans: list[Span]) -> dict[str, float]:
    """The median seconds of each step that finished well."""
    by_step: dict[str, list[float]] = {}
    for sp in all_spans:
        if sp.outcome == "ok" and sp.end is not None:
            by_step.setdefault(sp.step, []).append(sp.seconds(sp.end))
    return {step: statistics.median(v) for step, v in by_step.items()}


def history_medians(store, names: list[str], days: int = 90) -> dict[str, float]:
    """Median step durations over these nodes' rebuilds of the last `days` days."""
    moves = store.transitions(names, since=utcnow() - timedelta(days=days))
    return medians([sp for n, mv in moves.items() for sp in spans(n, mv)])


@dataclass(frozen=True)
class Estimate:
    started: datetime | None  # the first step's start
    makespan: float  # seconds from `started` to the last step's end (now, while nodes are in flight)
    remaining: float | None  # seconds still to go, None when the run has ended
    unknown: tuple[str, ...]  # steps without a finished sample: the estimate leaves them out


def estimate(run: Rebuild, by_node: dict[str, list[Span]], states: dict, median: dict[str, float],
             now: datetime | None = None) -> Estimate:
    """The run's makespan so far and a list-scheduling estimate to completion: each node in flight
    needs the median of what is left of its step and of the steps after it, each node not started
    every step's median, taken in run order by at most max_parallel lanes."""
    now = now or utcnow()
    every = [sp for v in by_node.values() for sp in v]
    started = min((sp.start for sp in every), default=None)
    last = max(((sp.end or now) for sp in every), default=started)
    makespan = (last - started).total_seconds() if started and last else 0.0
    if run.finished:
        return Estimate(started, makespan, None, ())
    unknown: set[str] = set()

    def need(steps) -> float:
        total = 0.0
        for step in steps:
            if step not in median:
                unknown.add(step)
            total += median.get(step, 0.0)
        return total

    lanes: list[float] = []
    queued: list[float] = []
    for name in run.nodes:
        st = states.get(name)
        if st is None or st.rebuild_id != run.id:
            queued.append(need(S.STEPS))  # not started in this run
        elif st.state in S.ACTIVE:
            i = S.STEPS.index(st.state)
            in_step = (now - st.step_started_at).total_seconds() if st.step_started_at else 0.0
            lanes.append(max(0.0, need([st.state]) - in_step) + need(S.STEPS[i + 1:]))
        elif st.state == S.READY:
            queued.append(need(S.STEPS))
        # done or failed in this run: nothing left
    width = max(1, int(run.options.get("max_parallel") or 1))
    heap = lanes + [0.0] * max(0, width - len(lanes))  # the lanes in flight, then the free ones
    heapq.heapify(heap)
    for cost in queued:
        heapq.heappush(heap, heapq.heappop(heap) + cost)
    return Estimate(started, makespan, max(heap) if (lanes or queued) else 0.0, tuple(sorted(unknown)))


def forecast(costs: list[float], canary: int, width: int) -> float:
    """Seconds a batch takes whose nodes take `costs` each, in start order: the first `canary` one
    after another, alone, then the rest on `width` lanes, each taking the next node when free."""
    alone = sum(costs[:canary])
    heap = [0.0] * max(1, width)
    for cost in costs[canary:]:
        heapq.heappush(heap, heapq.heappop(heap) + cost)
    return alone + max(heap)


def duration(seconds: float | None) -> str:
    """12 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
