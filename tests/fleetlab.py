"""A 40-host upgrade in mid-flight, for the console's pages: two clusters of 20 (bench/gen.py's
nodes), a service run of the first cluster 75 minutes in (a canary, then 4 lanes: nodes done,
in flight, one failed in drain, the rest queued), the second cluster rebuilt last week, power
states seen. Every move goes through the state machine; only the clock is set back, so each step
took what a real one takes."""

from __future__ import annotations

from datetime import datetime, timedelta

from bench.gen import nodes as generated
from provision.domain import parse_nodes
from provision.store import utcnow
from provision.store.tables import E, N, R
from provision.workflow import states as S
from provision.workflow.machine import advance

# seconds each step takes (installing: the installer; netboot: firmware to the installer's kernel)
STEP_SECONDS = {S.PREFLIGHT: 25, S.CAPTURE: 12, S.DRAIN: 260, S.RETIRE: 35, S.ARM: 6, S.NETBOOT: 190,
                S.INSTALLING: 1080, S.ENROLL: 140, S.REGISTER: 200}
EVENTS = {S.INSTALLING: "installed", S.ENROLL: "enrolled"}  # the callbacks that end the waiting steps


def _walk(store, name: str, run_id: int, until: float, jitter: float, fail_in: str | None = None) -> list[float]:
    """Move `name` through its steps while they fit in `until` seconds; the seconds of each move."""
    t, marks = 0.0, [0.0]
    advance(store, name, "start", rebuild_id=run_id)
    for step in S.STEPS:
        took = STEP_SECONDS[step] * jitter
        if t + took > until:
            break  # in this step now
        t += took
        if step == fail_in:
            advance(store, name, "fail", reason="the engine did not put the host in maintenance within 1800 s")
            marks.append(t)
            break
        advance(store, name, EVENTS.get(step, "ok"))
        marks.append(t)
    return marks


def _clock(store, name: str, began: datetime, marks: list[float], last: float | None = None) -> None:
    """Put the node's newest len(marks) moves at began + marks[i] seconds."""
    with store.db.write() as tx:
        node_id = tx.execute(N.select().where(N.c.name == name)).first().id
        rows = tx.execute(E.select().where(E.c.node_id == node_id, E.c.kind == "transition")
                          .order_by(E.c.id.desc()).limit(len(marks))).all()
        for r, mark in zip(reversed(rows), marks, strict=True):
            tx.execute(E.update().where(E.c.id == r.id).values(ts=began + timedelta(seconds=mark)))
        values = {"step_started_at": began + timedelta(seconds=marks[-1]), "rebuild_started_at": began}
        if last is not None:
            values["last_rebuild_seconds"] = last
        tx.execute(N.update().where(N.c.id == node_id).values(**values))


def populate(store, now: datetime | None = None) -> int:
    """The 40 nodes and their history; the id of the run in flight."""
    now = now or utcnow()
    store.import_nodes(parse_nodes(generated(40, cluster_size=20)))
    first = [f"hv{i:04d}" for i in range(20)]
    second = [f"hv{i:04d}" for i in range(20, 40)]
    total = sum(STEP_SECONDS.values())
    # last week: the second cluster, one run, all done
    old = store.create_rebuild(second, {"max_parallel": 5, "canary": 1}, runner="service")
    week = now - timedelta(days=7)
    for i, name in enumerate(second):
        jitter = 0.9 + (i % 5) * 0.06
        marks = _walk(store, name, old.id, 10 ** 6, jitter)
        start = week + timedelta(seconds=0 if i == 0 else total + ((i - 1) // 5) * total * 1.1)
        _clock(store, name, start, marks, last=marks[-1])
    store.set_rebuild_status(old.id, "done", {"done": second, "failed": [], "pending": []})
    # now: the first cluster, 75 minutes in: the canary, then 4 lanes
    run = store.create_rebuild(first, {"max_parallel": 4, "canary": 1}, runner="service")
    began = now - timedelta(minutes=75)
    with store.db.write() as tx:
        tx.execute(R.update().where(R.c.id == run.id).values(created_at=began - timedelta(seconds=5)))
        tx.execute(R.update().where(R.c.id == old.id).values(created_at=week - timedelta(seconds=5),
                                                             finished_at=week + timedelta(hours=6)))
    store.set_rebuild_status(run.id, "running")
    for i, name in enumerate(first[:9]):
        jitter = 0.85 + (i % 4) * 0.1
        start = 0.0 if i == 0 else total * 0.95 + ((i - 1) // 4) * total * 1.05 + (i - 1) % 4 * 20
        elapsed = 75 * 60 - start
        marks = _walk(store, name, run.id, elapsed, jitter, fail_in=S.DRAIN if i == 6 else None)
        _clock(store, name, began + timedelta(seconds=start), marks,
                last=marks[-1] if store.node_state(name).state == S.DONE else None)
    for i, name in enumerate(first + second):
        if i % 7 != 3:
            store.record_power(name, "off" if i == 13 else "on")
    return run.id
