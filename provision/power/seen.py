"""Every power state seen or set through a BMC is noted in the store (the console's fleet shows
it without asking each BMC): a driver factory wrapping another one."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("provision.power")


class Seen:
    def __init__(self, factory: Callable, record: Callable[[str, str], None]) -> None:
        self.factory, self.record = factory, record

    def __call__(self, node):
        return _Driver(self.factory(node), node.name, self.record)

    def __getattr__(self, name):
        return getattr(self.factory, name)


class _Driver:
    def __init__(self, driver, name: str, record: Callable[[str, str], None]) -> None:
        self._driver, self._name, self._record = driver, name, record

    def _note(self, state: str) -> None:
        try:
            self._record(self._name, state)
        except Exception:  # what was done through the BMC stands; only the note is lost
            log.warning("node %s: could not note power %s", self._name, state, exc_info=True)

    def get_power_state(self):
        state = self._driver.get_power_state()
        self._note(state)
        return state

    def set_power_state(self, action) -> None:
        self._driver.set_power_state(action)
        self._note("off" if action == "off" else "on")

    def netboot(self, *args, **kwargs):
        done = self._driver.netboot(*args, **kwargs)
        self._note("on")
        return done

    def __getattr__(self, name):
        return getattr(self._driver, name)
