from .clock import utcnow
from .records import AuditEntry, Build, Event, ImportResult, Media, NodeRecord, NodeState, Rebuild, Snapshot
from .store import Store

__all__ = ["AuditEntry", "Build", "Event", "ImportResult", "Media", "NodeRecord", "NodeState", "Rebuild", "Snapshot", "Store", "utcnow"]
