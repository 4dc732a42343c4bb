"""Generate N realistic nodes (the example's shape: mgmt NIC, two bonds, a storage VLAN, two disks)."""

from __future__ import annotations


def nodes(n: int, cluster_size: int = 20) -> dict:
    out = []
    for i in range(n):
        a, b = divmod(i, 250)
        out.append({
            "name": f"hv{i:04d}", "fqdn": f"hv{i:04d}.bench.example.com", "cluster": f"c{i // cluster_size:03d}",
            "profile": "rhvh" if i % 4 else "el",
            "bmc": {"address": "127.0.0.1", "port": 20000 + i, "username": "admin",
                    "password_file": "examples/secrets/bmc-rhvnode3.password"},
            "facts": {
                "firmware": "uefi" if i % 3 else "bios",
                "nics": [{"name": f"eno{k}", "mac": f"0a:00:{a:02x}:{b:02x}:00:{k:02x}"} for k in range(1, 7)],
                "bonds": [{"name": "bond0", "mode": "802.3ad", "slaves": ["eno2", "eno3"], "options": {"miimon": "100"}},
                          {"name": "bond1", "mode": "active-backup", "slaves": ["eno4", "eno5"]}],
                "vlans": [{"id": 20, "parent": "bond1"}],
                "networks": [
                    {"network": "ovirtmgmt", "interface": "eno1", "management": True,
                     "address": f"10.{(i >> 8) & 255}.{i & 255}.10/24",
                     "gateway": f"10.{(i >> 8) & 255}.{i & 255}.1"},
                    {"network": "vmnet", "interface": "bond0"},
                    {"network": "storage", "interface": "bond1.20", "address": f"172.{16 + (i >> 14)}.{(i >> 6) & 255}.{(i & 63) + 10}/24"},
                ],
                "disks": [{"wwn": f"0x5000c500{i:08x}", "install": True}, {"id": f"ata-DATA_{i:06d}", "serial": f"D{i:06d}"}],
                "dns_servers": ["10.0.0.2"], "dns_search": ["bench.example.com"],
            },
        })
    return {"nodes": out}
