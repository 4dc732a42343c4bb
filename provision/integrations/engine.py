"""oVirt engine: the protocol the workflow uses, and a fake.

The real client (REST API v4, requests) implements the same verbs."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from ..domain import Facts
from . import IntegrationError
from .fakestate import FakeState

BAD_STATES = {"install_failed", "non_operational", "non_responsive"}


@dataclass(frozen=True)
class Host:
    id: str
    name: str
    status: str
    cluster: str
    address: str | None = None
    hosted_engine: bool = False  # hosted_engine.configured: can run the engine VM
    gluster: bool = False  # its cluster has gluster_service enabled

# the engine's own VM on a hosted-engine deployment (the name hosted-engine --deploy gives it)
ENGINE_VM = "HostedEngine"


class EngineError(IntegrationError):
    def __init__(self, message: str) -> None:
        super().__init__("engine", message)


class Engine(Protocol):
    def validate(self) -> None: ...
    def find_host(self, name: str) -> Host | None: ...
    def cluster_hosts(self, cluster: str) -> list[Host]: ...
    def cluster_exists(self, cluster: str) -> bool:
        """The engine has a cluster of this name (the host is added back into it)."""
    def deactivate(self, host_id: str, stop_gluster: bool = False) -> None: ...
    def wait_status(self, host_id: str, wanted: set[str], timeout: float) -> Host: ...
    def host_vms(self, host_id: str) -> list[str]:
        """Names of the VMs running on the host now."""
    def undeploy_hosted_engine(self, host_id: str) -> None:
        """Reinstall host deploy with undeploy_hosted_engine (the documented way to take a host out
        of the hosted-engine set); the host comes back to maintenance."""
    def remove(self, host_id: str) -> None: ...
    def add_host(self, name: str, address: str, cluster: str, hosted_engine: bool = False) -> Host: ...
    def fence_agents(self, host_id: str) -> list[dict]:
        """The host's fence agents in order: {type, address, port, username, order, encrypt_options,
        options: {name: value}} (no passwords: the engine never shows them)."""
    def add_fence_agent(self, host_id: str, agent: dict, password: str) -> None:
        """Add `agent` (a dict as fence_agents gives) unless the host has one of its type and address;
        enable power management."""
    def setup_networks(self, host_id: str, facts: Facts) -> None: ...
    def activate(self, host_id: str) -> None: ...
    def ssh_public_key(self) -> str: ...
    def host_network_json(self, host_id: str) -> dict | None:
        """{'nics': [...], 'attachments': [...], 'networks': [...]} as the REST API returns them;
        None when this engine cannot report them."""
    def host_nics(self, host_id: str) -> list[tuple[str, str]] | None:
        """(name, MAC) of the host's physical NICs as it reports them now; None when unknown."""


class FakeEngine:
    """Hosts in a FakeState: {'hosts': {id: {...}}, 'calls': [...]}. deactivate -> maintenance,
    add_host -> installing (then maintenance on the next wait), activate -> up."""

    SSH_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDfakeengineKEY ovirt-engine"

    def __init__(self, state: FakeState, poll: float = 0.05) -> None:
        self.state, self.poll = state, poll

    @staticmethod
    def _host(h: dict) -> Host:
        return Host(h["id"], h["name"], h["status"], h["cluster"], h.get("address"),
                    bool(h.get("hosted_engine")), bool(h.get("gluster")))

    def validate(self) -> None:
        pass

    def find_host(self, name: str) -> Host | None:
        with self.state.edit() as d:
            self.state.record(d, "find_host", name=name)
            h = next((h for h in d.get("hosts", {}).values() if h["name"] == name), None)
            return self._host(h) if h else None

    def cluster_exists(self, cluster: str) -> bool:
        with self.state.edit() as d:
            self.state.record(d, "cluster_exists", cluster=cluster)
            known = d.get("clusters")
            return cluster in known if known is not None else any(
                h["cluster"] == cluster for h in d.get("hosts", {}).values())

    def cluster_hosts(self, cluster: str) -> list[Host]:
        with self.state.edit() as d:
            self.state.record(d, "list_hosts", cluster=cluster)
            return [self._host(h) for h in d.get("hosts", {}).values() if h["cluster"] == cluster]

    def _set(self, host_id: str, verb: str, status: str | None = None, then=None, **args) -> None:
        """One API call (one simulated round trip, recorded): `then(d, host)` is what the engine
        does on its own as a result (VMs migrate away, ...)."""
        with self.state.edit() as d:
            self.state.record(d, verb, host_id=host_id, **args)
            h = d.get("hosts", {}).get(host_id)
            if h is None:
                raise EngineError(f"host {host_id} not found")
            if status:
                h["status"] = status
            h.update({k: v for k, v in args.items() if k in ("fence_agent", "networks")})
            if then is not None:
                then(d, h)

    def deactivate(self, host_id: str, stop_gluster: bool = False) -> None:
        self._set(host_id, "deactivate", "maintenance", stop_gluster=stop_gluster,  # VMs migrate away, the
                  then=lambda d, h: d.get("vms", {}).pop(h["name"], None))     # engine VM among them

    def host_vms(self, host_id: str) -> list[str]:
        with self.state.edit() as d:
            self.state.record(d, "host_vms", host_id=host_id)
            return list(d.get("vms", {}).get(d.get("hosts", {}).get(host_id, {}).get("name"), []))

    def undeploy_hosted_engine(self, host_id: str) -> None:
        self._set(host_id, "undeploy_hosted_engine", "maintenance", then=lambda d, h: h.update(hosted_engine=False))

    def wait_status(self, host_id: str, wanted: set[str], timeout: float) -> Host:
        deadline = time.monotonic() + timeout
        while True:
            with self.state.edit() as d:
                self.state.record(d, "get_host", host_id=host_id)  # each poll is a GET of the host
                h = d.get("hosts", {}).get(host_id)
                if h is None:
                    raise EngineError(f"host {host_id} not found")
                if h["status"] == "installing":
                    h["status"] = "maintenance"
                host = self._host(h)
            if host.status in wanted:
                return host
            if host.status in BAD_STATES:
                raise EngineError(f"host {host.name} is {host.status}")
            if time.monotonic() > deadline:
                raise EngineError(f"host {host.name} still {host.status} after {timeout:.0f} s")
            time.sleep(self.poll)

    def remove(self, host_id: str) -> None:
        with self.state.edit() as d:
            self.state.record(d, "remove", host_id=host_id)
            d.get("hosts", {}).pop(host_id, None)

    def add_host(self, name: str, address: str, cluster: str, hosted_engine: bool = False) -> Host:
        with self.state.edit() as d:
            host_id = str(uuid.uuid4())
            h = {"id": host_id, "name": name, "status": "installing", "cluster": cluster, "address": address,
                 "hosted_engine": hosted_engine}
            d.setdefault("hosts", {})[host_id] = h
            self.state.record(d, "add_host", name=name, address=address, cluster=cluster, hosted_engine=hosted_engine)
            return self._host(h)

    def fence_agents(self, host_id: str) -> list[dict]:
        with self.state.edit() as d:
            self.state.record(d, "fence_agents", host_id=host_id)
            return [dict(a) for a in d.get("hosts", {}).get(host_id, {}).get("fence_agents", [])]

    def add_fence_agent(self, host_id: str, agent: dict, password: str) -> None:
        def add(d, h):
            if not any(a["type"] == agent["type"] and a["address"] == agent["address"]
                       for a in h.get("fence_agents", [])):
                h.setdefault("fence_agents", []).append(dict(agent))
        self._set(host_id, "add_fence_agent", fence_agent=dict(agent), then=add)

    def setup_networks(self, host_id: str, facts: Facts) -> None:
        nets = {a.network: {"interface": a.interface, "address": str(a.address) if a.address else None}
                for a in facts.networks}
        self._set(host_id, "setup_networks", networks=nets, bonds=[b.name for b in facts.bonds])

    def activate(self, host_id: str) -> None:
        self._set(host_id, "activate", "up")

    def ssh_public_key(self) -> str:
        return self.SSH_KEY

    def host_nics(self, host_id: str) -> list[tuple[str, str]] | None:
        """A reinstalled host reports the NICs a test put under `reinstalled_nics` for its name."""
        with self.state.edit() as d:
            self.state.record(d, "host_nics", host_id=host_id)
            name = d.get("hosts", {}).get(host_id, {}).get("name")
            found = d.get("reinstalled_nics", {}).get(name)
            return [tuple(x) for x in found] if found is not None else None

    def host_network_json(self, host_id: str) -> dict | None:
        with self.state.edit() as d:
            self.state.record(d, "host_network_json", host_id=host_id)
            return d.get("hosts", {}).get(host_id, {}).get("network_json")
