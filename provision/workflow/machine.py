"""The one function that changes a node's state."""

from __future__ import annotations

from collections.abc import Sequence

from ..store import NodeState, Store
from ..store.tables import KEEP
from .states import ARM, DONE, FAILED, NETBOOT, PREFLIGHT, RESUME_CLEARS, InvalidTransition, move_message, next_state


def failure_after(state: str, new: str, reason: str | None):
    """What a move does to the node's failed_step and fail_reason: a failure records the step it
    failed in and why; leaving `failed` (a retry, a new rebuild) or starting over at preflight
    clears them; any other move keeps them (KEEP)."""
    if new == FAILED:
        return state, reason
    if state == FAILED or new == PREFLIGHT:
        return None, None
    return KEEP


def transition(store: Store, name: str, event: str, *, expect: str | None = None, reason: str | None = None,
               rebuild_id: int | None = None, data: dict | None = None,
               events: Sequence[tuple[str, str]] = (), wake: bool = True) -> NodeState | None:
    """Apply `event` to node `name` and persist the move (state, timestamp, step data, event log)
    atomically; the node's new state, data included.

    `expect` pins the state the caller saw: if another actor (a callback, another runner) moved
    the node meanwhile, nothing is written and None is returned. `events` ((kind, message) pairs)
    go in with the move. `wake=False` when the caller is the node's runner (it knows the move).
    Raises InvalidTransition when the table has no such move."""
    if expect is not None and event != "resume":  # the compare-and-set below checks `expect`
        state, failed_step = expect, None
    else:
        current = store.node_state(name)
        state, failed_step = expect or current.state, current.failed_step
        if current.state != state:
            return None
    new = next_state(state, event, failed_step)
    if event == "resume" and new == NETBOOT and store.active_build(name) is None:
        new = ARM  # its build was disarmed (an abort before the power cycle): the retry arms it again
    if event == "resume" and new in RESUME_CLEARS:
        data = {**{k: None for k in RESUME_CLEARS[new]}, **(data or {})}
    message = move_message(state, new, event, reason)
    return store.compare_and_set_state(name, state, new, message,
                                       failure=failure_after(state, new, reason),
                                       rebuild_id=rebuild_id, data=data if event != "start" else (data or {}),
                                       replace_data=event == "start",  # a new rebuild starts with no step data
                                       events=events, wake=wake,
                                       clock="start" if event == "start" else "finish" if new == DONE else None)


def advance(store: Store, name: str, event: str, **kwargs) -> str | None:
    """`transition`, returning only the new state's name (None when nothing was written)."""
    moved = transition(store, name, event, **kwargs)
    return moved.state if moved else None


__all__ = ["InvalidTransition", "advance", "transition"]
