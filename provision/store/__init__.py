from .clock import utcnow
from .runs import NodeState, Rebuild
from .store import Build, Event, ImportResult, NodeRecord, Snapshot, Store

__all__ = ["Build", "Event", "ImportResult", "NodeRecord", "NodeState", "Rebuild", "Snapshot", "Store", "utcnow"]
