from .clock import utcnow
from .records import Build, Event, ImportResult, Media, NodeRecord, NodeState, Rebuild, Snapshot
from .store import Store

__all__ = ["Build", "Event", "ImportResult", "Media", "NodeRecord", "NodeState", "Rebuild", "Snapshot", "Store", "utcnow"]
