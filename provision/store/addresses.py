"""The MAC/IP index (addresses table): every MAC and IP of each node's latest facts, unique across
the store. Every writer of facts fills it in its own transaction (the uniqueness check), and a
boot-config or kickstart request finds its node through it in one indexed query."""

from __future__ import annotations

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from ..domain import Facts
from ..errors import InputError
from .models import AddressRow, NodeRow, SnapshotRow


def wanted_addresses(facts: Facts) -> set[tuple[str, str]]:
    """(kind, value) of every MAC and IP address in `facts`, as the index stores them."""
    return {("MAC", m) for m in facts.macs()} | {("IP address", str(a.ip)) for a in facts.addresses()}


class AddressesMixin:
    def node_for_mac(self, mac: str) -> str | None:
        """The node whose latest facts have this MAC: one indexed query, whatever the fleet size."""
        with self._session() as s:
            return s.scalar(select(NodeRow.name).join(AddressRow, AddressRow.node_id == NodeRow.id)
                            .where(AddressRow.kind == "MAC", AddressRow.value == mac))

    def boot_lookup(self, mac: str) -> tuple[str, int] | None:
        """(node, its generation) for a MAC, in one indexed query; None for a MAC no node has."""
        with self._session() as s:
            row = s.execute(select(NodeRow.name, NodeRow.generation).join(AddressRow, AddressRow.node_id == NodeRow.id)
                            .where(AddressRow.kind == "MAC", AddressRow.value == mac)).first()
            return (row[0], row[1]) if row else None

    @staticmethod
    def _index_addresses(s: Session, node_id: int, facts: Facts, name: str) -> None:
        """Replace the node's addresses, refusing (InputError naming both nodes) any another node has."""
        wanted = wanted_addresses(facts)
        if wanted:
            taken = s.execute(select(AddressRow.kind, AddressRow.value, NodeRow.name)
                              .join(NodeRow, AddressRow.node_id == NodeRow.id)
                              .where(AddressRow.node_id != node_id,
                                     or_(*(and_(AddressRow.kind == k, AddressRow.value.in_([v for k2, v in wanted
                                                                                            if k2 == k]))
                                           for k in {k for k, _ in wanted})))).all()
            clashes = sorted(f"node {name!r}: {k} {v} is also used by node {owner!r}" for k, v, owner in taken
                             if (k, v) in wanted)
            if clashes:
                raise InputError("\n".join(clashes))
        s.execute(delete(AddressRow).where(AddressRow.node_id == node_id))
        s.add_all(AddressRow(kind=k, value=v, node_id=node_id) for k, v in sorted(wanted))

    @staticmethod
    def _claimed(s: Session, excluding: set[str]) -> list[tuple[str, str, str]]:
        """(kind, value, owner) of every stored address of the nodes not in `excluding`: one query."""
        return [(k, v, n) for k, v, n in s.execute(select(AddressRow.kind, AddressRow.value, NodeRow.name)
                                                    .join(NodeRow, AddressRow.node_id == NodeRow.id))
                if n not in excluding]

    def _backfill_addresses(self) -> None:
        """Databases from before the address index: fill it from every node's latest facts."""
        with self._writing() as s:
            if s.scalar(select(func.count()).select_from(AddressRow)) or not s.scalar(
                    select(func.count()).select_from(SnapshotRow)):
                return
            for row in s.scalars(select(NodeRow)):
                snap = self._latest(s, row.id)
                if snap is not None:
                    try:
                        with s.begin_nested():
                            self._index_addresses(s, row.id, self._parsed(snap), row.name)
                    except InputError:
                        pass  # an old clash stays visible to the next write of either node

