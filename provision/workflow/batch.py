"""A rolling batch: canaries first and alone, then at most `max_parallel` nodes in flight,
never leaving fewer than `min_up` hosts Up in a cluster; hosted-engine hosts one at a time and
never leaving fewer than `[defaults] hosted_engine_min_up` hosted-engine hosts Up; the first
failure stops new nodes from starting while the ones in flight finish their current step.
`stop` (abort) does the same from outside; `hold` (pause) starts no new node and lets the ones in
flight finish their rebuild, then the batch returns with the rest pending."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import states as S
from .machine import advance
from .runner import drive

if TYPE_CHECKING:  # services builds what steps use: it imports this package
    from ..services import Services


@dataclass
class BatchResult:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # not started, or stopped part-way
    elsewhere: list[str] = field(default_factory=list)  # started by another runner first: not ours to drive
    error: str | None = None
    peak_in_flight: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending and self.error is None


def start_order(states: dict, names: list[str], canary: int, order: str) -> list[str]:
    """The order a batch starts `names` in: nodes already part-way first (they are down already),
    then the canaries (the first names, as listed), then by `[defaults] batch_order`:
    "longest_first" puts the nodes whose last rebuild took longest first, and those never rebuilt
    before them (the longest-processing-time-first rule: the batch's last nodes to start are short
    ones, so the slots end together); "as_listed" keeps the operator's order. Sorting an ordered
    list again changes nothing: the service orders a run when it is submitted (so its plan and
    page show the order it runs in) and the batch orders it again when it starts."""
    queue = sorted(names, key=lambda n: states[n].state not in S.ACTIVE)
    head, rest = queue[:canary], queue[canary:]
    if order == "as_listed":
        return head + rest

    def key(n: str) -> tuple[bool, bool, float]:
        st = states[n]
        return st.state not in S.ACTIVE, st.last_rebuild_seconds is not None, -(st.last_rebuild_seconds or 0.0)
    return head + sorted(rest, key=key)


class Batch:
    def __init__(self, ctx: Services, names: list[str], *, rebuild_id: int, max_parallel: int = 1,
                 min_up: int | None = None, canary: int = 0, retry: set[str] | None = None,
                 accept_drift: bool = False, allow_gluster: bool = False, resume: bool = True,
                 on_change: Callable[[str, str, str | None], None] | None = None) -> None:
        self.accept_drift, self.allow_gluster = accept_drift, allow_gluster
        self.resume = resume  # False: a node found part-way through a rebuild belongs to another runner
        self.he_min_up = ctx.cfg.defaults.hosted_engine_min_up
        self._he: dict[str, bool] = {}
        self._queued: dict = {}  # name -> NodeState as read when the batch began (queued nodes only)
        self.ctx, self.names, self.rebuild_id = ctx, list(names), rebuild_id
        self.max_parallel, self.min_up, self.canary = max(1, max_parallel), min_up, canary
        # nodes this batch may retry: resume a failed one at its failed step, adopt one left part-way
        # by a run that ended (aborted, or its runner gone)
        self.retry = retry or set()
        self.on_change = on_change or (lambda *_: None)
        self.stop = threading.Event()
        self.hold = threading.Event()
        self.in_flight: dict[str, Future] = {}
        self.result = BatchResult()

    # -- scheduling -------------------------------------------------------------------------
    def run(self) -> BatchResult:
        # every node's state in one read: the scheduler decides from it and reads no more; a node
        # another runner moved meanwhile loses the compare-and-set of its start, and is theirs
        self._queued = self.ctx.store.node_states(self.names)
        missing = [n for n in self.names if n not in self._queued]
        if missing:
            self.ctx.store.node_state(missing[0])  # NotFound, naming it
        queue = start_order(self._queued, self.names, self.canary, self.ctx.cfg.defaults.batch_order)
        canaries, rest = queue[: self.canary], queue[self.canary:]
        with ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="rebuild") as pool:
            for i, name in enumerate(canaries):
                if self.stop.is_set() or self.hold.is_set():
                    rest = canaries[i:] + rest
                    break
                self._start(pool, name)
                self._reap(wait_all=True)
            while rest and not self.stop.is_set():
                if self.hold.is_set():  # paused: drain, start nothing
                    if not self.in_flight:
                        break
                    self._reap(wait_all=False)
                    continue
                if len(self.in_flight) < self.max_parallel:
                    startable, blocked = self._first_startable(rest)
                    if startable is not None:
                        self._start(pool, rest.pop(startable))
                        continue
                    if not self.in_flight:
                        self.result.error = blocked
                        self.stop.set()
                        break
                self._reap(wait_all=False)
            self._reap(wait_all=True)
        self.result.pending += [n for n in rest if n not in self.result.pending]
        return self.result

    def _first_startable(self, rest: list[str]) -> tuple[int | None, str | None]:
        """The index of the first node that may start now, else why the first one may not. Stops at
        the first startable node: asking about every queued node for every start made a 500-node
        batch quadratic in store reads."""
        first_reason = None
        for i, name in enumerate(rest):
            reason = self._min_up_blocks(name) or self._he_blocks(name)
            if reason is None:
                return i, None
            first_reason = first_reason or reason
        return None, first_reason

    def _start(self, pool: ThreadPoolExecutor, name: str) -> None:
        """Hand `name` to a worker. The worker, not this scheduling thread, records the start and
        drives the node: with many nodes in flight a write waits its turn, and waiting here held up
        every start behind it (a 500-node batch spent most of its time starting nodes)."""
        st = self._queued.pop(name)
        if st.state in S.ACTIVE and not self.resume and st.rebuild_id != self.rebuild_id and name not in self.retry:
            self.result.elsewhere.append(name)  # moved on by another runner since we looked: theirs
            self.on_change(name, st.state, "in a rebuild started by another runner")
            return
        if st.state == S.FAILED and name not in self.retry:
            self.result.failed.append(name)
            self.stop.set()
            return
        self.in_flight[name] = pool.submit(self._run_node, name, st.state, st.rebuild_id)
        self.result.peak_in_flight = max(self.result.peak_in_flight, len(self.in_flight))

    def _run_node(self, name: str, state: str, rebuild_id: int | None = None) -> str | None:
        """In a worker: start (or resume) `name` and drive it; its final state, or None when another
        runner started it first."""
        data = {"accept_drift": self.accept_drift, "allow_gluster": self.allow_gluster}
        if state in (S.READY, S.DONE):
            if advance(self.ctx.store, name, "start", expect=state, rebuild_id=self.rebuild_id, data=data) is None:
                # another runner on the same database started it between our read and our write:
                # the compare-and-set made it theirs; two runners never drive one node
                self.result.elsewhere.append(name)
                self.on_change(name, self.ctx.store.node_state(name).state, "started by another runner")
                return None
            self.on_change(name, S.PREFLIGHT, None)
        elif state == S.FAILED:
            advance(self.ctx.store, name, "resume", expect=S.FAILED, rebuild_id=self.rebuild_id, data=data)
            self.on_change(name, self.ctx.store.node_state(name).state, "resumed")
        elif state in S.ACTIVE and rebuild_id != self.rebuild_id and name in self.retry:
            if advance(self.ctx.store, name, "adopt", expect=state, rebuild_id=self.rebuild_id) is None:
                self.result.elsewhere.append(name)  # it moved meanwhile: whoever moved it drives it
                return None
            self.on_change(name, state, f"taken over from rebuild {rebuild_id}")
        return drive(self.ctx, name, stop=self.stop, on_change=self.on_change)

    def _reap(self, *, wait_all: bool) -> None:
        if not self.in_flight:
            return
        futures = list(self.in_flight.values())
        if wait_all:
            wait(futures)
        else:
            wait(futures, timeout=self.ctx.poll, return_when=FIRST_COMPLETED)
        for name, fut in list(self.in_flight.items()):
            if not fut.done():
                continue
            del self.in_flight[name]
            final = fut.result()
            if final is None:  # started by another runner: listed in `elsewhere` already
                continue
            bucket = {S.DONE: self.result.done, S.FAILED: self.result.failed}.get(final, self.result.pending)
            bucket.append(name)
            if final != S.DONE:
                self.stop.set()

    def _min_up_blocks(self, name: str) -> str | None:
        """Why starting `name` now would leave its cluster with too few hosts Up, or None."""
        queued = self._queued[name]
        if self.min_up is None or queued.state in S.ACTIVE:
            return None
        cluster = queued.cluster
        # a node handed to a worker that has not recorded its start yet counts as going down too.
        # The store first, then the engine: a node read as still up here and deactivated before
        # the engine is asked counts twice (safe); the other order could count it as neither
        going_down = sum(1 for st in self.ctx.store.node_states(list(self.in_flight)).values()
                         if st.cluster == cluster and (st.state in S.STILL_UP or st.state in (S.READY, S.DONE)))
        up = sum(1 for h in self.ctx.engine.cluster_hosts(cluster) if h.status == "up")
        if up - going_down - 1 >= self.min_up:
            return None
        return (f"cluster {cluster}: {up} host(s) Up, {going_down} about to go down; rebuilding {name} "
                f"would leave fewer than --min-up {self.min_up}")

    def _is_he(self, name: str) -> bool:
        """A hosted-engine host: as recorded by its preflight, else as the engine says now (one
        listing of its cluster answers for every queued node in it; a host not listed there is
        looked up by name)."""
        if name not in self._he:
            st = self._queued.get(name) or self.ctx.store.node_state(name)
            if "hosted_engine" in st.data:
                self._he[name] = bool(st.data["hosted_engine"])
            else:
                listed = {h.name: h.hosted_engine for h in self.ctx.engine.cluster_hosts(st.cluster)}
                for n, q in self._queued.items():
                    if n not in self._he and n in listed and q.cluster == st.cluster and "hosted_engine" not in q.data:
                        self._he[n] = bool(listed[n])
                if name not in self._he:
                    host = self.ctx.engine.find_host(name)
                    self._he[name] = bool(host and host.hosted_engine)
        return self._he[name]

    def _he_blocks(self, name: str) -> str | None:
        """Why `name`, a hosted-engine host, cannot start now: another one is in flight, or it would
        leave fewer than hosted_engine_min_up hosted-engine hosts Up."""
        queued = self._queued[name]
        if queued.state in S.ACTIVE or not self._is_he(name):
            return None
        busy = [n for n in self.in_flight if self._is_he(n)]
        if busy:
            return f"hosted-engine hosts are rebuilt one at a time ({busy[0]} is in flight)"
        cluster = queued.cluster
        up = [h.name for h in self.ctx.engine.cluster_hosts(cluster) if h.hosted_engine and h.status == "up"]
        if len(up) - 1 >= self.he_min_up:
            return None
        return (f"rebuilding {name} would leave {len(up) - 1} hosted-engine host(s) Up in {cluster} "
                f"(hosted_engine_min_up {self.he_min_up}: the engine VM needs somewhere to run)")


def disarm_after_abort(ctx: Services, rebuild_id: int, names: list[str]) -> list[str]:
    """An abort leaves no node armed that nobody will power-cycle: a node of the run that stopped
    armed before its netboot (its boot configs say install: anyone's reboot would reinstall it) is
    disarmed and parked in failed(netboot), from which a retry arms it again. Nodes past the power
    cycle go on as they are (an install in progress finishes), and a retry takes them over. The
    nodes disarmed."""
    disarmed = []
    for name in names:
        st = ctx.store.node_state(name)
        if st.rebuild_id != rebuild_id or st.state != S.NETBOOT or st.data.get("netboot_done"):
            continue
        ctx.store.end_build(name, "aborted")
        if advance(ctx.store, name, "fail", expect=S.NETBOOT,
                   reason=f"rebuild {rebuild_id} aborted after arm, before the power cycle: disarmed (boot configs "
                          "back to local boot); a retry arms it again") is not None:
            disarmed.append(name)
    return disarmed
