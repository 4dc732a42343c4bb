"""oVirt engine REST API v4 client (JSON), behind the Engine protocol of engine.py.

Wire format (ovirt-engine-api-model; the SDK's examples): SSO token from
`<url>/sso/oauth/token` (form: grant_type=password, scope=ovirt-app-api), then
`Authorization: Bearer`, `Version: 4`, `Accept: application/json` on `<url>/api/...`;
collections are objects holding a list under the singular name ({"host": [...]});
actions are POSTs of an Action object to `/hosts/{id}/<action>`; faults are
{"reason": ..., "detail": ...}."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..config import EngineConfig
from ..domain import Facts
from ..domain.bonding import MODES
from ..secretfiles import read_secret
from .engine import BAD_STATES, EngineError, Host
from .http import HttpClient
from .ovirtjson import boolean, integer

MODE_NUMBERS = {name: num for num, name in MODES.items()}


class OvirtEngine:
    def __init__(self, cfg: EngineConfig, *, timeout: float = 30.0, attempts: int = 4, backoff: float = 0.5,
                 poll: float = 5.0) -> None:
        self.cfg, self.poll = cfg, poll
        self.http = HttpClient("engine", cfg.url or "", error=EngineError, verify=str(cfg.ca_file) if cfg.ca_file else True,
                               timeout=timeout, attempts=attempts, backoff=backoff)
        self._token: str | None = None
        self._clusters: dict[str, bool] = {}  # cluster id -> gluster_service

    # -- plumbing ----------------------------------------------------------------------------
    def validate(self) -> None:
        if not self.cfg.url:
            raise EngineError("[engine] url is not configured")
        if self.cfg.ca_file and not Path(self.cfg.ca_file).is_file():
            raise EngineError(f"[engine] ca_file {self.cfg.ca_file} is not a file")
        self._password()

    def _password(self) -> str:
        return read_secret(self.cfg.password_file, "PROVISION_ENGINE_PASSWORD", "engine")

    def _login(self) -> str:
        resp = self.http.request("POST", "/sso/oauth/token", headers={"Accept": "application/json"},
                                 data={"grant_type": "password", "scope": "ovirt-app-api",
                                       "username": self.cfg.username, "password": self._password()})
        body = _json(resp)
        if resp.status_code != 200 or "access_token" not in body:
            raise EngineError(f"login as {self.cfg.username} refused: "
                              f"{body.get('error_description') or body.get('error') or f'HTTP {resp.status_code}'}")
        self._token = body["access_token"]
        return self._token

    def _api(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> dict:
        """Every API call goes through here: the token is fetched on first use and renewed once on 401."""
        for attempt in (1, 2):
            token = self._token or self._login()
            resp = self.http.request(method, f"/api{path}", json=body, params=params,
                                     headers={"Authorization": f"Bearer {token}", "Version": "4",
                                              "Accept": "application/json"})
            if resp.status_code == 401 and attempt == 1:
                self._token = None  # expired or revoked: log in again, once
                continue
            break
        data = _json(resp)
        if resp.status_code >= 400:
            detail = data.get("detail") or data.get("reason") or resp.text[:200] or f"HTTP {resp.status_code}"
            raise EngineError(f"{method} {path}: {detail.strip('[]')}")
        return data

    def _host(self, h: dict, cluster: str = "") -> Host:
        """hosted_engine is only in the answer with all_content=true (HostsService.list/HostService.get)."""
        return Host(h["id"], h["name"], h.get("status", ""), cluster, h.get("address"),
                    boolean((h.get("hosted_engine") or {}).get("configured"), f"host {h['name']}: hosted_engine.configured"),
                    self._gluster((h.get("cluster") or {}).get("id")))

    def _gluster(self, cluster_id: str | None) -> bool:
        if not cluster_id:
            return False
        if cluster_id not in self._clusters:
            self._clusters[cluster_id] = boolean(self._api("GET", f"/clusters/{cluster_id}").get("gluster_service"),
                                                 f"cluster {cluster_id}: gluster_service")
        return self._clusters[cluster_id]

    # -- verbs -------------------------------------------------------------------------------
    def find_host(self, name: str) -> Host | None:
        hosts = self._api("GET", "/hosts", params={"search": f"name={name}", "all_content": "true"}).get("host", [])
        return next((self._host(h) for h in hosts if h["name"] == name), None)

    def cluster_hosts(self, cluster: str) -> list[Host]:
        return [self._host(h, cluster) for h in
                self._api("GET", "/hosts", params={"search": f"cluster={cluster}", "all_content": "true"})
                .get("host", [])]

    def cluster_exists(self, cluster: str) -> bool:
        """ClustersService.list with a search by name."""
        found = self._api("GET", "/clusters", params={"search": f"name={cluster}"}).get("cluster", [])
        return any(c.get("name") == cluster for c in found)

    def get_host(self, host_id: str) -> Host:
        return self._host(self._api("GET", f"/hosts/{host_id}", params={"all_content": "true"}))

    def deactivate(self, host_id: str, stop_gluster: bool = False) -> None:
        self._api("POST", f"/hosts/{host_id}/deactivate", {"stop_gluster_service": True} if stop_gluster else {})

    def host_vms(self, host_id: str) -> list[str]:
        name = self._api("GET", f"/hosts/{host_id}")["name"]
        return [v["name"] for v in self._api("GET", "/vms", params={"search": f"host={name}"}).get("vm", [])]

    def undeploy_hosted_engine(self, host_id: str) -> None:
        """HostService.install defaults `activate` (and `reboot`) to true: without activate=false the
        host comes back Up and takes VMs, and the wait for maintenance never ends."""
        self._api("POST", f"/hosts/{host_id}/install",
                  {"undeploy_hosted_engine": True, "activate": False, "ssh": {"authentication_method": "publickey"}})

    def wait_status(self, host_id: str, wanted: set[str], timeout: float) -> Host:
        deadline = time.monotonic() + timeout
        while True:
            raw = self._api("GET", f"/hosts/{host_id}", params={"all_content": "true"})
            host = self._host(raw)
            if host.status in wanted:
                return host
            if host.status in BAD_STATES:
                raise EngineError(f"host {host.name} is {host.status}"
                                  + (f": {raw['status_detail']}" if raw.get("status_detail") else ""))
            if time.monotonic() > deadline:
                stuck = ""
                if "maintenance" in wanted:
                    vms = [v["name"] for v in self._api("GET", "/vms", params={"search": f"host={host.name}"})
                           .get("vm", [])]
                    stuck = f"; VMs still on it (did not migrate): {', '.join(vms)}" if vms else ""
                raise EngineError(f"host {host.name} still {host.status} after {timeout:.0f} s{stuck}")
            time.sleep(self.poll)

    def remove(self, host_id: str) -> None:
        self._api("DELETE", f"/hosts/{host_id}")

    def add_host(self, name: str, address: str, cluster: str, hosted_engine: bool = False) -> Host:
        body = {"name": name, "address": address, "cluster": {"name": cluster},
                "ssh": {"authentication_method": "publickey"}}
        params = {"activate": "false"} | ({"deploy_hosted_engine": "true"} if hosted_engine else {})
        return self._host(self._api("POST", "/hosts", body, params=params), cluster)

    def fence_agents(self, host_id: str) -> list[dict]:
        """The host's fence agents (FenceAgentsService.list), in their order, as a restore needs them:
        type, address, port, username, order, encrypt_options and options. The engine never shows an
        agent's password."""
        out: list[dict] = []
        for a in self._api("GET", f"/hosts/{host_id}/fenceagents").get("agent", []):
            where = f"host {host_id}: fence agent {a.get('id')}"
            out.append({"type": a.get("type") or "", "address": a.get("address") or "",
                        "port": integer(a.get("port"), f"{where}: port"), "username": a.get("username") or "",
                        "order": integer(a.get("order"), f"{where}: order") or len(out) + 1,
                        "encrypt_options": boolean(a.get("encrypt_options"), f"{where}: encrypt_options"),
                        "options": {o["name"]: o.get("value", "") for o in (a.get("options") or {}).get("option", [])}})
        return sorted(out, key=lambda a: a["order"])

    def add_fence_agent(self, host_id: str, agent: dict, password: str) -> None:
        """Idempotent: an agent of this type for this address already on the host is left alone.
        Power management is enabled with it."""
        have = self._api("GET", f"/hosts/{host_id}/fenceagents").get("agent", [])
        if not any(a.get("type") == agent["type"] and a.get("address") == agent["address"] for a in have):
            body = {"type": agent["type"], "address": agent["address"], "username": agent["username"],
                    "password": password, "order": agent.get("order") or 1,
                    "options": {"option": [{"name": k, "value": str(v)} for k, v in agent.get("options", {}).items()]}}
            if agent.get("port"):
                body["port"] = agent["port"]
            if agent.get("encrypt_options"):
                body["encrypt_options"] = True
            self._api("POST", f"/hosts/{host_id}/fenceagents", body)
        self._api("PUT", f"/hosts/{host_id}", {"power_management": {"enabled": True}})

    def setup_networks(self, host_id: str, facts: Facts) -> None:
        self._api("POST", f"/hosts/{host_id}/setupnetworks", setup_networks_body(facts))
        self._api("POST", f"/hosts/{host_id}/commitnetconfig", {})

    def activate(self, host_id: str) -> None:
        self._api("POST", f"/hosts/{host_id}/activate", {})

    def host_network_json(self, host_id: str) -> dict:
        """The raw NICs, network attachments and networks, for capture.engine. Networks are read in
        the host's cluster (ClustersService/ClusterNetworksService: `/clusters/{id}/networks`): only
        there do `usages` carry the cluster roles (management, display, migration, gluster);
        `/networks` is the data-center view without them."""
        host = self._api("GET", f"/hosts/{host_id}")
        cluster_id = (host.get("cluster") or {}).get("id")
        if not cluster_id:
            raise EngineError(f"host {host.get('name', host_id)}: the engine did not say which cluster it is in")
        return {"nics": self._api("GET", f"/hosts/{host_id}/nics").get("host_nic", []),
                "attachments": self._api("GET", f"/hosts/{host_id}/networkattachments").get("network_attachment", []),
                "networks": self._api("GET", f"/clusters/{cluster_id}/networks").get("network", []),
                "cluster_id": cluster_id}

    def host_nics(self, host_id: str) -> list[tuple[str, str]]:
        """HostNicsService.list: physical NICs are those with a MAC and neither bonding nor a VLAN."""
        return [(n["name"], n["mac"]["address"].lower())
                for n in self._api("GET", f"/hosts/{host_id}/nics").get("host_nic", [])
                if (n.get("mac") or {}).get("address") and not n.get("bonding") and not n.get("vlan")]

    def ssh_public_key(self) -> str:
        resp = self.http.request("GET", "/services/pki-resource",
                                 params={"resource": "engine-certificate", "format": "OPENSSH-PUBKEY"})
        if resp.status_code != 200:
            raise EngineError(f"engine SSH public key: HTTP {resp.status_code}")
        return resp.text.strip()


def setup_networks_body(facts: Facts) -> dict:
    """Bonds with their mode and options, slaves by NIC name; each captured engine network (but the
    management network, which host deploy sets up) on its NIC/bond, VLAN networks on the VLAN's
    base device, with its static addresses; connectivity checked."""
    bonds = [{"name": b.name,
              "bonding": {"options": {"option": [{"name": "mode", "value": MODE_NUMBERS[b.mode]}]
                                      + [{"name": k, "value": v} for k, v in b.options.items()]},
                          "slaves": {"host_nic": [{"name": s} for s in b.slaves]}}}
             for b in facts.bonds]
    attachments = []
    for att in facts.networks:
        if att.management:
            continue
        vlan = facts.vlan(att.interface)
        assignments = []
        if att.address is not None:
            ip = {"address": str(att.address.ip), "netmask": str(att.address.netmask), "version": "v4"}
            if att.gateway is not None:
                ip["gateway"] = str(att.gateway)
            assignments.append({"assignment_method": "static", "ip": ip})
        if att.address6 is not None:
            ip6 = {"address": str(att.address6.ip), "netmask": str(att.address6.network.prefixlen), "version": "v6"}
            if att.gateway6 is not None:
                ip6["gateway"] = str(att.gateway6)
            assignments.append({"assignment_method": "static", "ip": ip6})
        entry: dict[str, Any] = {"network": {"name": att.network}, "host_nic": {"name": vlan.parent if vlan else att.interface}}
        if assignments:
            entry["ip_address_assignments"] = {"ip_address_assignment": assignments}
        attachments.append(entry)
    return {"modified_bonds": {"host_nic": bonds},
            "modified_network_attachments": {"network_attachment": attachments},
            "check_connectivity": True, "connectivity_timeout": 120}


def _json(resp) -> dict:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
