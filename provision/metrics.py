"""Prometheus metrics, one registry per server instance (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter("provision_http_requests_total", "HTTP requests by endpoint and status",
                                     ["endpoint", "status"], registry=self.registry)
        self.renders = Counter("provision_renders_total", "Configs rendered for nodes, by kind", ["kind"],
                               registry=self.registry)
        self.ks_denied = Counter("provision_kickstart_denied_total", "Kickstart fetches refused, by reason",
                                 ["reason"], registry=self.registry)
        self.tftp_requests = Counter("provision_tftp_requests_total", "TFTP requests by outcome", ["outcome"],
                                     registry=self.registry)
