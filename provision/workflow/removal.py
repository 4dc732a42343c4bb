"""Taking a node out of the inventory (`provision node remove`): never while a rebuild has it."""

from __future__ import annotations

from ..errors import Conflict
from ..store import Store
from . import states as S


def remove_node(store: Store, name: str) -> None:
    """Delete `name` and everything stored of it, refused (Conflict, naming why) while it is
    part-way through a rebuild, armed to install, or named by a run that has not ended."""
    st = store.node_state(name)
    if st.state in S.ACTIVE:
        raise Conflict(f"node {name}: {st.state}, part-way through a rebuild; abort the run and let it "
                       "stop first (provision runs), or let it finish")
    if store.active_build(name) is not None:
        raise Conflict(f"node {name}: armed to install (a live build); nothing was removed")
    run = store.busy_nodes().get(name)
    if run is not None:
        raise Conflict(f"node {name}: in rebuild {run}, which has not ended; nothing was removed")
    store.remove_node(name, expect=st.state)
