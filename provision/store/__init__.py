from .store import Build, Event, ImportResult, NodeRecord, NodeState, Rebuild, Snapshot, Store, utcnow

__all__ = ["Build", "Event", "NodeState", "Rebuild", "ImportResult", "NodeRecord", "Snapshot", "Store", "utcnow"]
