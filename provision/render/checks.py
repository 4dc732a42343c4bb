"""Problems a preview shows before a wipe (pure: reads the node and its facts, writes nothing).

A kept disk holding an LVM volume group named like the one the install creates (an old OS on a
data disk: "two RHVH 4.3 setups" in the field) would give the reinstalled host two VGs of one
name; LVM then refuses to activate either by name. `provision render --check` and `provision
check` report it, and a rebuild refuses it unless `--accept-foreign-vg`."""

from __future__ import annotations

from ..domain import Facts, Node

# the VG each profile's install creates: RHVH/oVirt Node autopart names it after the product
# (`rhvh` on RHVH, `onn` on oVirt Node, with a `_<suffix>` when anaconda de-duplicates); el.ks.j2: vg_root
INSTALL_VGS = {"rhvh": ("rhvh", "onn"), "el": ("vg_root",)}


def foreign_vgs(node: Node, facts: Facts) -> list[str]:
    names = INSTALL_VGS.get(node.profile, ())
    return [f"kept disk {d.id} holds volume group {vg}, named like the one the {node.profile} install creates"
            for d in facts.kept_disks for vg in d.vgs
            if any(vg == n or vg.startswith(n + "_") for n in names)]
