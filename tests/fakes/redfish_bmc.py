"""A Redfish BMC for the tests: sushy-tools' emulator (the one OpenStack Ironic tests against) with
its fake systems driver, basic auth from a bcrypt htpasswd file, on loopback. Two of its systems
misbehave on purpose: "rejects" answers a boot override with 400, "ignores" answers 204 and keeps
its old target (a BMC that does not hold the override). Run as `python redfish_bmc.py --config FILE`."""

from __future__ import annotations

import sys

from sushy_tools import error
from sushy_tools.emulator import main
from sushy_tools.emulator.resources.systems import fakedriver

_set_boot_device = fakedriver.FakeDriver.set_boot_device


def set_boot_device(self, identity, boot_source):
    name = self.name(identity)
    if name == "rejects":
        raise error.BadRequest(f"boot source {boot_source} cannot be set now (BMC busy)")
    if name == "ignores":
        return None
    return _set_boot_device(self, identity, boot_source)


fakedriver.FakeDriver.set_boot_device = set_boot_device

if __name__ == "__main__":
    sys.exit(main.main())
