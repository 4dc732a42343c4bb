"""The node state machine, as data (after Ironic's states.py).

A rebuild walks STEPS in order. `ok` moves a step to the next; the `installed` and `enrolled`
callbacks move the two waiting steps; `fail` parks any active state in FAILED (with the step and
reason); `resume` (a retry) takes FAILED back to the step that failed, or to the one RESUME_AT
names; `start` begins a rebuild; `adopt` hands a node part-way through a run that ended to a new
run, in the state it is in.
"""

from __future__ import annotations

import re

READY = "ready"
PREFLIGHT = "preflight"
CAPTURE = "capture"
DRAIN = "drain"
RETIRE = "retire"
ARM = "arm"
NETBOOT = "netboot"
INSTALLING = "installing"
ENROLL = "enroll"
REGISTER = "register"
DONE = "done"
FAILED = "failed"

STEPS = (PREFLIGHT, CAPTURE, DRAIN, RETIRE, ARM, NETBOOT, INSTALLING, ENROLL, REGISTER)
ACTIVE = frozenset(STEPS)
TERMINAL = frozenset({READY, DONE, FAILED})
# Steps that finish on a callback from the node, not on the runner's own work.
WAITING = {INSTALLING: "installed", ENROLL: "enrolled"}
# Steps before which the host is still Up in the engine (for --min-up).
STILL_UP = frozenset({PREFLIGHT, CAPTURE, DRAIN})
# From ARM on, the node's disk may be wiped at any moment: never re-run earlier steps.
POINT_OF_NO_RETURN = NETBOOT

TRANSITIONS: dict[tuple[str, str], str] = {
    (READY, "start"): PREFLIGHT,
    (DONE, "start"): PREFLIGHT,
    (PREFLIGHT, "ok"): CAPTURE,
    (CAPTURE, "ok"): DRAIN,
    (DRAIN, "ok"): RETIRE,
    (RETIRE, "ok"): ARM,
    (ARM, "ok"): NETBOOT,
    (NETBOOT, "ok"): INSTALLING,
    # The node may report `installed` before the runner has recorded netboot -> installing.
    (NETBOOT, "installed"): ENROLL,
    (INSTALLING, "installed"): ENROLL,
    (ENROLL, "enrolled"): REGISTER,
    (REGISTER, "ok"): DONE,
}
for _state in STEPS:
    TRANSITIONS[(_state, "fail")] = FAILED
    TRANSITIONS[(_state, "adopt")] = _state

# Where a retry resumes when it is not the failed step itself: an install that failed or never called
# back is retried by a new build and a new network boot (a deliberate reinstall, with a new token and a
# new at-most-once key); every other step resumes where it failed, with what it recorded.
RESUME_AT = {INSTALLING: ARM}
# Step data a retry clears, by the step it resumes at: the build and netboot of the failed install;
# the sealed enrollment reply (a retried enrollment issues a fresh one-time password).
RESUME_CLEARS = {ARM: ("build_id", "netboot_done", "vmedia"), ENROLL: ("enroll_reply",)}


_MOVE = re.compile(r"^(\w+) -> (\w+) \((\w+)\)")


def move_message(state: str, new: str, event: str, reason: str | None = None) -> str:
    """The event log's text for a move; `parse_move` reads it back (step timelines)."""
    return f"{state} -> {new} ({event})" + (f": {reason}" if reason else "")


def parse_move(message: str) -> tuple[str, str, str] | None:
    """(state, new, event) of a `move_message`, or None for any other text."""
    m = _MOVE.match(message)
    return (m.group(1), m.group(2), m.group(3)) if m else None


class InvalidTransition(Exception):
    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"no transition from {state!r} on {event!r}")
        self.state, self.event = state, event


def next_state(state: str, event: str, failed_step: str | None = None) -> str:
    if state == FAILED and event == "resume":
        if failed_step not in ACTIVE:
            raise InvalidTransition(state, event)
        return RESUME_AT.get(failed_step, failed_step)
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None
