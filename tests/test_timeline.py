"""Where a rebuild's time went: step spans read back from state moves, medians, a run's estimate,
and the CLI's live detail column."""

from __future__ import annotations

from datetime import datetime, timedelta

from provision.cli.rebuild import Progress
from provision.store import NodeState, Rebuild
from provision.workflow import states as S
from provision.workflow.timeline import duration, estimate, forecast, last_rebuild, medians, spans

T0 = datetime(2026, 12, 1, 8, 0, 0)


def moves(*steps: tuple[int, str, str, str]) -> list[tuple[datetime, str]]:
    """(minute, state, new, event) -> (ts, message) as the event log holds them."""
    return [(T0 + timedelta(minutes=m), S.move_message(a, b, e, "why" if b == S.FAILED else None))
            for m, a, b, e in steps]


RETRIED = moves((0, "ready", "preflight", "start"), (1, "preflight", "capture", "ok"), (2, "capture", "drain", "ok"),
                (7, "drain", "failed", "fail"), (30, "failed", "drain", "resume"), (33, "drain", "retire", "ok"),
                (34, "retire", "arm", "ok"))


def test_spans_follow_the_moves_a_failure_and_a_retry_included():
    got = spans("n1", RETRIED)
    assert [(sp.step, sp.outcome) for sp in got] == [("preflight", "ok"), ("capture", "ok"), ("drain", "failed"),
                                                     ("drain", "ok"), ("retire", "ok"), ("arm", "running")]
    assert got[2].seconds(T0) == 300 and got[3].start == T0 + timedelta(minutes=30)
    assert got[-1].end is None and got[-1].seconds(T0 + timedelta(minutes=40)) == 360
    assert medians(got) == {"preflight": 60, "capture": 60, "drain": 180, "retire": 60}  # the failed drain is not one
    # a second rebuild: the node page shows the last one only
    again = RETRIED + moves((50, "arm", "netboot", "ok"), (60, "netboot", "installing", "ok"),
                            (90, "installing", "enroll", "installed"), (91, "enroll", "register", "enrolled"),
                            (92, "register", "done", "ok"), (200, "done", "preflight", "start"))
    assert [sp.step for sp in last_rebuild("n1", again)] == ["preflight"]
    # a run taking over a node part-way does not split its step
    adopted = moves((0, "ready", "preflight", "start"), (1, "preflight", "capture", "ok"),
                    (5, "capture", "capture", "adopt"), (6, "capture", "drain", "ok"))
    assert [(sp.step, sp.seconds(T0)) for sp in spans("n1", adopted)][1] == ("capture", 300)
    assert spans("n1", [(T0, "a log line, not a move")]) == []


def test_estimate_adds_what_is_left_of_each_node_on_the_runs_lanes():
    run = Rebuild(7, T0, ["a", "b", "c", "d"], {"max_parallel": 2}, "running")
    now = T0 + timedelta(minutes=10)
    median = {step: 60.0 for step in S.STEPS} | {"installing": 1200.0}  # 8 steps of 1 min and 20 min: 28 min
    states = {"a": NodeState("a", "c", S.DONE, T0, None, None, 7, {}, 1),
              "b": NodeState("b", "c", S.INSTALLING, T0 + timedelta(minutes=5), None, None, 7, {}, 1),
              "c": NodeState("c", "c", S.READY, None, None, None, None, {}, 1),
              "d": NodeState("d", "c", S.FAILED, T0, "drain", "x", 7, {}, 1)}
    by_node = {"a": spans("a", moves((0, "ready", "preflight", "start"), (4, "register", "done", "ok")))}
    est = estimate(run, by_node, states, median, now=now)
    # b: 15 of its 20 installing minutes and 2 steps after; c: a whole rebuild, on the other lane
    assert est.makespan == 240 and est.remaining == 28 * 60 and est.unknown == ()
    est = estimate(run, by_node, states, {"installing": 1200.0}, now=now)
    assert "drain" in est.unknown and est.remaining == 1200
    finished = Rebuild(7, T0, ["a"], {}, "done", finished_at=now)
    assert estimate(finished, by_node, states, median, now=now).remaining is None


def test_forecast_runs_canaries_alone_then_fills_the_lanes():
    assert forecast([10, 30, 20, 10, 5], canary=1, width=2) == 10 + 35
    assert forecast([], canary=0, width=3) == 0
    assert [duration(x) for x in (5, 65, 3600 * 2 + 180)] == ["5 s", "1 min 05 s", "2 h 03 min"]


def test_the_live_display_says_the_step_and_for_how_long():
    now = [T0]
    p = Progress(["n1", "n2", "n3"], "none", clock=lambda: now[0])
    p("n1", S.NETBOOT, None, since=T0 - timedelta(seconds=130))
    p("n2", S.FAILED, "in drain: the engine refused")
    p("n3", S.PREFLIGHT, None)  # a local batch says no time: the display counts from the change
    now[0] = T0 + timedelta(seconds=7)
    assert p.rows() == [("n1", "netboot", "netboot for 2 min 17 s"), ("n2", "failed", "in drain: the engine refused"),
                        ("n3", "preflight", "preflight for 7 s")]
    p("n3", S.PREFLIGHT, None)  # the same state again keeps its start
    assert p.rows()[2][2] == "preflight for 7 s"
