"""Pure, validated models: no I/O."""

from .facts import Bond, Disk, Facts, NetworkAttachment, Nic, Vlan
from .inventory import check_unique, format_errors, load_yaml, parse_nodes, read_text
from .node import PROFILES, Bmc, Node

__all__ = [
    "Bmc", "Bond", "Disk", "Facts", "NetworkAttachment", "Nic", "Node", "PROFILES", "Vlan",
    "check_unique", "format_errors", "load_yaml", "parse_nodes", "read_text",
]
