"""The console's fleet page as data: every node's row from one store query (store.fleet), filtered,
counted per state, sorted (failed first by default), grouped by cluster and cut into pages. Only the
rows of the page shown read their facts (the management IP)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from ..store import utcnow
from ..workflow import states as S
from ..workflow.timeline import duration

PER_PAGE = (25, 50, 100, 250, 500)
SORTS = ("attention", "name", "cluster", "state", "since", "power", "bmc", "facts", "last")
# the default order: what needs someone first
_URGENCY = {S.FAILED: 0, **{s: 1 for s in S.STEPS}, S.READY: 2, S.DONE: 3}
ORDER = [S.FAILED, *S.STEPS, S.READY, S.DONE]


def age(ts: datetime | None, now: datetime | None = None) -> str:
    if ts is None:
        return "never"
    seconds = max(0, int(((now or utcnow()) - ts).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


@dataclass
class Query:
    q: str = ""
    cluster: str = ""
    state: str = ""
    group: str = ""  # "" or "cluster"
    sort: str = "attention"
    desc: bool = False
    page: int = 1
    per: int = 100

    @classmethod
    def parse(cls, args) -> Query:
        def pick(value, allowed, default):
            return value if value in allowed else default
        page = args.get("page", "1")
        per = args.get("per", "100")
        return cls(q=args.get("q", "").strip()[:200], cluster=args.get("cluster", "").strip()[:63],
                   state=pick(args.get("state", ""), ORDER, ""), group=pick(args.get("group", ""), ("cluster",), ""),
                   sort=pick(args.get("sort", ""), SORTS, "attention"), desc=args.get("dir") == "desc",
                   page=max(1, int(page)) if page.isdigit() else 1,
                   per=int(per) if per.isdigit() and int(per) in PER_PAGE else 100)

    def args(self, **change) -> dict:
        """The query string of this view with `change`: links keep every filter in the URL."""
        v = {"q": self.q, "cluster": self.cluster, "state": self.state, "group": self.group, "sort": self.sort,
             "dir": "desc" if self.desc else "", "page": self.page, "per": self.per} | change
        defaults = {"sort": "attention", "page": 1, "per": 100}
        return {k: x for k, x in v.items() if x not in ("", None) and defaults.get(k) != x}


@dataclass
class Page:
    query: Query
    rows: list[dict]
    groups: list[tuple[str, list[dict]]]  # (cluster, its rows on this page); one ("", rows) ungrouped
    counts: list[tuple[str, int]]  # per state, of the nodes matching all but the state filter
    total: int  # nodes in the store
    matching: int
    pages: int
    clusters: list[str] = field(default_factory=list)


def _key(sort: str):
    def bmc(r):
        return (r.bmc.get("address", ""), int(r.bmc.get("port") or 0))
    return {
        "attention": lambda r: (_URGENCY.get(r.state, 9), r.name),
        "name": lambda r: r.name,
        "cluster": lambda r: (r.cluster, r.name),
        "state": lambda r: (ORDER.index(r.state) if r.state in ORDER else 99, r.name),
        "since": lambda r: (r.step_started_at or datetime.min, r.name),
        "power": lambda r: (r.power_state or "~", r.name),
        "bmc": lambda r: (bmc(r), r.name),
        "facts": lambda r: (r.snapshot_at or datetime.min, r.name),
        "last": lambda r: (r.last_rebuild_seconds or 0.0, r.name),
    }[sort]


def _select(every: list, query: Query) -> tuple[list, list]:
    """(the nodes the query's search and cluster match, those of them in its state, in its order)."""
    needle = query.q.lower()
    base = [r for r in every if (not query.cluster or r.cluster == query.cluster)
            and (not needle or needle in f"{r.name} {r.fqdn} {r.bmc.get('address', '')}".lower())]
    matching = [r for r in base if not query.state or r.state == query.state]
    matching.sort(key=_key(query.sort), reverse=query.desc)
    if query.group:
        matching.sort(key=lambda r: r.cluster)  # stable: the chosen order within each cluster
    return base, matching


def matching_names(store, query: Query) -> list[str]:
    """Every node the query matches, on all its pages ("tick all N matching")."""
    return [r.name for r in _select(store.fleet(), query)[1]]


def build(store, query: Query, ip_of) -> Page:
    """The page `query` asks for; `ip_of(name)`: a shown node's management IP."""
    now = utcnow()
    every = store.fleet()
    clusters = sorted({r.cluster for r in every})
    base, matching = _select(every, query)
    tally = Counter(r.state for r in base)
    counts = [(st, tally[st]) for st in ORDER if tally[st]]
    pages = max(1, -(-len(matching) // query.per))
    query.page = min(query.page, pages)
    shown = matching[(query.page - 1) * query.per:query.page * query.per]
    rows = [_row(r, now, ip_of) for r in shown]
    if query.group:
        groups: list[tuple[str, list[dict]]] = []
        for row in rows:
            if not groups or groups[-1][0] != row["cluster"]:
                groups.append((row["cluster"], []))
            groups[-1][1].append(row)
    else:
        groups = [("", rows)]
    return Page(query, rows, groups, counts, len(every), len(matching), pages, clusters)


def _row(r, now: datetime, ip_of) -> dict:
    bmc = r.bmc.get("address", "")
    port = r.bmc.get("port")
    return {"name": r.name, "fqdn": r.fqdn, "cluster": r.cluster, "state": r.state,
            "reason": (f"in {r.failed_step}: {r.fail_reason}" if r.state == S.FAILED else ""),
            "in_step": (duration((now - r.step_started_at).total_seconds())
                        if r.state in S.ACTIVE and r.step_started_at else ""),
            "ip": ip_of(r.name) if r.snapshot_id is not None else "",
            "bmc": f"{r.bmc.get('driver', 'ipmi')} {bmc}" + (f":{port}" if port and port != 623 else ""),
            "power": r.power_state or "unknown", "power_age": age(r.power_seen_at, now) if r.power_seen_at else "",
            "facts_age": age(r.snapshot_at, now), "rebuild_id": r.rebuild_id,
            "last": duration(r.last_rebuild_seconds) if r.last_rebuild_seconds else "",
            "boots": "installer" if r.armed else "local disk"}
