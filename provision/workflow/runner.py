"""Drive one node through its steps until it is done, failed, or asked to stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ProvisionError
from ..store import utcnow
from . import states as S
from . import steps
from .machine import transition

if TYPE_CHECKING:  # services builds what steps use: it imports this package
    from ..services import Services

log = logging.getLogger("provision.workflow")


def drive(ctx: Services, name: str, *, stop: threading.Event,
          on_change: Callable[[str, str, str | None], None] | None = None) -> str:
    """Run steps for `name` from whatever state it is in. Returns the state it stopped in.
    With `stop` set, the node finishes the step it is in and goes no further.

    The node's state is read from the store only when this runner does not know it: at the start,
    after a move someone else made first, and while waiting for a callback. A move of its own
    returns the new state (step data included), so a step costs one write and no read."""
    notify = on_change or (lambda *_: None)
    changed = ctx.store.change_event(name)
    st = None
    while True:
        if st is None:
            changed.clear()  # before the read: a change committed after it sets the event again
            st = ctx.store.node_state(name)
        if st.state in S.TERMINAL:
            return st.state
        if st.state in S.WAITING:
            if stop.is_set():
                return st.state
            limit = ctx.timeout(st.state)
            waited = (utcnow() - st.step_started_at).total_seconds() if st.step_started_at else 0
            if limit and waited > limit:
                late = f"no {S.WAITING[st.state]} callback within {limit:.0f} s"
                changed.clear()
                st = transition(ctx.store, name, "fail", expect=st.state, reason=late, wake=False)
                if st:
                    notify(name, S.FAILED, late)
                continue
            # a callback received in this process wakes us at once; one from another process (a
            # `serve` while this runner is the CLI) is seen on the next read of this one row
            changed.wait(min(ctx.poll, limit - waited) if limit else ctx.poll)
            st = None
            continue
        if stop.is_set():
            return st.state
        event, done, reason = "ok", None, None
        try:
            done = steps.RUN[st.state](ctx, st)
        except ProvisionError as exc:
            event, reason = "fail", str(exc)
        except Exception as exc:  # a bug must park the node, not kill the batch
            log.exception("step %s of node %s", st.state, name)
            event, reason = "fail", f"internal error in {st.state}: {type(exc).__name__}: {exc}"
        done = done or steps.Done()
        # our own move does not wake us (we get its result); a change anyone commits after it does,
        # and one committed before it is in what it returns (or makes it fail: then we read)
        changed.clear()
        st = transition(ctx.store, name, event, expect=st.state, reason=reason,
                        data=done.data or None, events=done.events, wake=False)
        if st:
            notify(name, st.state, reason)
