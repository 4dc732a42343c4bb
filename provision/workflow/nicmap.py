"""NIC names after a reinstall: names change across EL versions (EL7 `em1`/`p1p1` -> EL8 `eno1`/
`ens1f0` -> EL9 `ens1f0np0`), MACs do not. Map every NIC the snapshot uses to the name the
reinstalled host reports for the same MAC (the engine's /hosts/{id}/nics)."""

from __future__ import annotations

from ..domain import Facts
from ..errors import ProvisionError


def map_by_mac(facts: Facts, reported: list[tuple[str, str]]) -> dict[str, str]:
    """{old name: new name} for every NIC in use; refuses, listing them, if a MAC is not reported."""
    by_mac = {mac.lower(): name for name, mac in reported}
    missing = [f"{n.name} ({n.mac})" for n in facts.in_use() if n.mac not in by_mac]
    if missing:
        raise ProvisionError("the reinstalled host reports no NIC with the MAC of " + ", ".join(missing)
                             + f"; it reports {', '.join(f'{n} ({m})' for n, m in reported) or 'no NICs'}")
    return {n.name: by_mac[n.mac] for n in facts.nics if n.mac in by_mac}
