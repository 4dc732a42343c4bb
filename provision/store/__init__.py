from .store import Build, Event, ImportResult, NodeRecord, Snapshot, Store, utcnow

__all__ = ["Build", "Event", "ImportResult", "NodeRecord", "Snapshot", "Store", "utcnow"]
