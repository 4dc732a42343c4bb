from .clock import utcnow
from .imports import ImportResult
from .media import Media
from .runs import NodeState, Rebuild
from .store import Build, Event, NodeRecord, Snapshot, Store

__all__ = ["Build", "Event", "ImportResult", "Media", "NodeRecord", "NodeState", "Rebuild", "Snapshot", "Store", "utcnow"]
