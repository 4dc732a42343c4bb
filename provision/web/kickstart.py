"""GET /ks/<token>: the installer's kickstart fetch, answered as core/kickstart.py decides. HEAD
answers the same checks but records no fetch."""

from __future__ import annotations

from flask import Blueprint, Response, request

from ..core import kickstart as rules
from .deps import services

bp = Blueprint("kickstart", __name__)


def sent_macs() -> list[str]:
    return rules.macs_from(v for k, v in request.headers.items() if k.lower().startswith(rules.MAC_HEADER))


@bp.route("/ks/<token>", methods=["GET", "HEAD"])
def kickstart(token: str):
    store = services().store
    decision = rules.decide(store, token, sent_macs(), request.remote_addr, services().cfg.server.install_sources)
    if not decision.allowed or decision.build is None:
        services().metrics.ks_denied.labels(decision.reason).inc()
        if decision.detail and decision.build is not None:
            services().denials.tell(store.add_event, decision.build.node, "ks-denied", decision.detail)
        return Response(f"{'not found' if decision.status == 404 else 'forbidden'}\n", status=decision.status,
                        mimetype="text/plain")
    data = services().bootcache.kickstart(decision.build)
    if request.method == "HEAD":
        return Response(mimetype="text/plain", headers={"Content-Length": str(len(data))})
    store.mark_ks_fetched(decision.build.id, f"kickstart fetched by {request.remote_addr}")
    services().metrics.renders.labels("kickstart").inc()
    return Response(data, mimetype="text/plain")
