"""Fake oVirt engine speaking REST API v4 JSON. Every /api request is first checked against the
published API model (ovirt_model.py: the ovirt-engine-sdk-python services, method parameters and
type members) and refused with 400 if the real API does not have it.

Shapes from the public ovirt-engine-api-model (types Host, FenceAgent, NetworkAttachment, HostNic,
Bonding, Action; HostService actions deactivate/activate/setupnetworks/commitnetconfig), the
ovirt-engine-sdk examples (add_bond.py, add_host.py), and the oVirt SSO docs
(POST /ovirt-engine/sso/oauth/token, grant_type=password, scope=ovirt-app-api -> access_token).
JSON collections are {"host": [...]}, actions answer {"status": "complete"}, faults are
{"reason": "Operation Failed", "detail": "[...]"}.

Every scalar of an API answer is written as a string, as the engine writes them (`"configured":
"false"`, `"gluster_service": "true"`, `"port": "623"`, `"mtu": "1500"`): the API model's Boolean type
says "the valid values are the strings false and true ... the server will always return lower case
values" (ovirt-engine-api-model, types/boolean), the SDK's reader parses every scalar from text
(ovirtsdk4/reader.py: Reader.parse_boolean/parse_integer), and oVirt's own web UI types its
booleans as "true"/"false" strings for that reason (ovirt-web-ui #1386, #1423). `engine_scalars`
below is the one place that does it, so no test can see a JSON boolean or number from this fake.

HostService.install defaults `activate` and `reboot` to true (ovirtsdk4.services.HostService.install):
a host reinstalled without `activate=false` comes back Up, not in maintenance.
Fence agent types are those the engine accepts (VdsFenceType in the engine's vdc_options for 4.4:
apc, apc_snmp, bladecenter, cisco_ucs, drac5, drac7, eps, hpblade, ilo, ilo2, ilo3, ilo4, ilo_ssh,
ipmilan, redfish, rsa, rsb, wti); GET of a host's fence agents never shows their passwords."""

from __future__ import annotations

import re
import secrets
import uuid

from .base import FakeHttpServer, Request
from .ovirt_model import check_request

BASE = "/ovirt-engine"
# NetworkUsage values that are roles of a network in a cluster (types.NetworkUsage; network_cluster)
CLUSTER_ROLES = {"management", "display", "migration", "gluster", "default_route"}
FENCE_TYPES = {"apc", "apc_snmp", "bladecenter", "cisco_ucs", "drac5", "drac7", "eps", "hpblade", "ilo", "ilo2",
               "ilo3", "ilo4", "ilo_ssh", "ipmilan", "redfish", "rsa", "rsb", "wti"}
PUBKEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7fakeEngineKeyForTests ovirt-engine"


class FakeOvirt(FakeHttpServer):
    def __init__(self, tls, users: dict[str, str] | None = None, install_polls: int = 2) -> None:
        super().__init__(tls)
        self.users = users or {"admin@internal": "engine-secret"}
        self.tokens: set[str] = set()
        self.hosts: dict[str, dict] = {}
        self.vms: dict[str, list[str]] = {}  # host name -> VMs that will not migrate
        self.install_polls = install_polls
        self.clusters = {"ocpcluster": str(uuid.uuid4()), "legacy": str(uuid.uuid4())}
        self.stuck_in: dict[str, str] = {}  # host name -> status it reports instead of maintenance/up
        # host name -> the NICs/attachments JSON a re-added (reinstalled) host reports: NIC names may
        # differ from the old host's (EL7 em1 -> EL8 eno1 -> EL9 ens1f0np0), MACs do not
        self.reinstalled: dict[str, dict] = {}
        self.model_violations: list[str] = []  # requests refused because the published API model lacks them
        self.gluster_clusters: set[str] = set()  # cluster names with gluster_service
        self.engine_vm_on: str | None = None  # host name running the HostedEngine VM
        self.retired_logs: dict[str, list] = {}  # removed host id -> its request log

    def add_existing(self, name: str, cluster: str, status: str = "up", hosted_engine: bool = False,
                     fence_agents: list[dict] | None = None) -> str:
        """fence_agents: FenceAgent bodies as an add would send them (type, address, port, username,
        password, order, options); power management is enabled when there is one."""
        host_id = str(uuid.uuid4())
        self.hosts[host_id] = {"id": host_id, "name": name, "address": f"{name}.lab.example.com", "status": status,
                               "cluster": {"id": self.clusters[cluster], "href": f"{BASE}/api/clusters/{self.clusters[cluster]}"},
                               "power_management": {"enabled": bool(fence_agents)}, "port": 54321,
                               "_cluster": cluster, "_polls": 0, "_log": [], "_he": hosted_engine,
                               "_fences": list(fence_agents or [])}
        return host_id

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def by_name(self, name: str) -> dict | None:
        return next((h for h in self.hosts.values() if h["name"] == name), None)

    @staticmethod
    def _public(h: dict, all_content: bool = False) -> dict:
        """HostedEngine details only with all_content=true, as HostService.get documents."""
        out = {k: v for k, v in h.items() if not k.startswith("_")}
        out["href"] = f"{BASE}/api/hosts/{h['id']}"
        if all_content:
            out["hosted_engine"] = {"configured": h["_he"], "active": h["_he"] and h["status"] == "up"}
        return out

    @staticmethod
    def _fault(status: int, detail: str):
        return status, {}, {"reason": "Operation Failed", "detail": f"[{detail}]"}

    def handle(self, req: Request):
        if req.path == f"{BASE}/sso/oauth/token" and req.method == "POST":
            form = req.form()
            if form.get("grant_type") != "password" or form.get("scope") != "ovirt-app-api":
                return 400, {}, {"error": "invalid_request", "error_description": "bad grant_type or scope"}
            if self.users.get(form.get("username")) != form.get("password"):
                return 400, {}, {"error": "access_denied",
                                 "error_description": "Cannot authenticate user 'admin@internal': The username or password is incorrect."}
            token = secrets.token_urlsafe(24)
            self.tokens.add(token)
            return 200, {}, {"access_token": token, "scope": "ovirt-app-api", "exp": "9999999999999", "token_type": "bearer"}
        if req.path == f"{BASE}/services/pki-resource":
            if req.query != {"resource": "engine-certificate", "format": "OPENSSH-PUBKEY"}:
                return 400, {}, "bad resource"
            return 200, {"Content-Type": "text/plain"}, PUBKEY + "\n"
        if not req.path.startswith(f"{BASE}/api"):
            return 404, {}, "not found"
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return 401, {"WWW-Authenticate": "Bearer"}, {"reason": "Unauthorized", "detail": "[not authenticated]"}
        if req.headers.get("version") != "4" or req.headers.get("accept") != "application/json":
            return 400, {}, {"reason": "Bad Request", "detail": "[expected Version: 4 and Accept: application/json]"}
        path = req.path[len(BASE) + 4:]
        problems = check_request(req.method, path, req.query, req.json() if req.body else None)
        if problems:  # the real API has no such service, parameter or member: refuse as it would
            self.model_violations += problems
            return 400, {}, {"reason": "Bad Request", "detail": f"[not in the API model: {'; '.join(problems)}]"}
        status, headers, body = self._api(req, path)
        return status, headers, engine_scalars(body)

    def _api(self, req: Request, path: str):
        m = re.fullmatch(r"/hosts(?:/([^/]+))?(?:/([a-z]+))?", path)
        if path == "/networks" and req.method == "GET":  # the data-center view: no cluster roles in usages
            nets = {n["id"]: dict(n, usages={"usage": [u for u in n.get("usages", {}).get("usage", [])
                                                       if u not in CLUSTER_ROLES]})
                    for h in self.hosts.values() for n in h.get("_net", {}).get("networks", [])}
            return 200, {}, ({"network": list(nets.values())} if nets else {})
        cm = re.fullmatch(r"/clusters/([^/]+)/networks", path)
        if cm and req.method == "GET":  # ClusterNetworksService: usages carry the cluster's roles
            cluster = next((c for c, cid in self.clusters.items() if cid == cm.group(1)), None)
            if cluster is None:
                return 404, {}, {"reason": "Operation Failed", "detail": "[Entity not found: Cluster]"}
            nets = {n["id"]: dict(n, cluster={"id": cm.group(1)}) for h in self.hosts.values()
                    if h["_cluster"] == cluster for n in h.get("_net", {}).get("networks", [])}
            return 200, {}, ({"network": list(nets.values())} if nets else {})
        if path == "/vms" and req.method == "GET":
            name = req.query.get("search", "").removeprefix("host=")
            names = self.vms.get(name, []) + (["HostedEngine"] if self.engine_vm_on == name else [])
            return 200, {}, {"vm": [{"name": v, "id": str(uuid.uuid4())} for v in names]}
        if path == "/clusters" and req.method == "GET":  # ClustersService.list, search=name=X
            wanted = req.query.get("search", "").removeprefix("name=")
            found = [{"id": cid, "name": c} for c, cid in self.clusters.items() if not wanted or c == wanted]
            return 200, {}, ({"cluster": found} if found else {})
        cl = re.fullmatch(r"/clusters/([^/]+)", path)
        if cl and req.method == "GET":
            name = next((c for c, cid in self.clusters.items() if cid == cl.group(1)), None)
            if name is None:
                return 404, {}, {"reason": "Operation Failed", "detail": "[Entity not found: Cluster]"}
            return 200, {}, {"id": cl.group(1), "name": name, "gluster_service": name in self.gluster_clusters,
                             "virt_service": True}
        if not m:
            return 404, {}, {"reason": "Not Found", "detail": f"[{path}]"}
        host_id, action = m.groups()
        if host_id is None:
            if req.method == "GET":
                search = req.query.get("search", "")
                key, _, value = search.partition("=")
                field = {"name": "name", "cluster": "_cluster"}.get(key)
                hosts = [self._public(h, req.query.get("all_content") == "true") for h in self.hosts.values()
                         if field and h[field] == value]
                return 200, {}, ({"host": hosts} if hosts else {})
            if req.method == "POST":
                return self._add(req)
        host = self.hosts.get(host_id)
        if host is None:
            return 404, {}, {"reason": "Operation Failed", "detail": "[Entity not found: Host]"}
        host["_log"].append((req.method, action, req.json() if req.body else None))
        if action is None and req.method == "GET":
            return 200, {}, self._public(self._advance(host), req.query.get("all_content") == "true")
        if action is None and req.method == "DELETE":
            if host["status"] != "maintenance":
                return self._fault(409, f"Cannot remove Host. Host is in {host['status'].capitalize()} status.")
            self.retired_logs[host_id] = self.hosts.pop(host_id)["_log"]
            return 200, {}, {"status": "complete"}
        if action is None and req.method == "PUT":
            host.update({k: v for k, v in req.json().items() if k == "power_management"})
            return 200, {}, self._public(host)
        return self._action(host, action, req)

    @staticmethod
    def _unknown_nics(host: dict, body: dict) -> str | None:
        """As the engine does: every slave and every attachment's host_nic must name a NIC the host
        reports, or a bond of this request (HostSetupNetworks validation, 'NETWORK_INTERFACES_DONT_EXIST')."""
        known = {n["name"] for n in host.get("_net", {}).get("nics", [])}
        if not known:
            return None
        bonds = body.get("modified_bonds", {}).get("host_nic", [])
        names = [s["name"] for b in bonds for s in b.get("bonding", {}).get("slaves", {}).get("host_nic", [])]
        names += [a["host_nic"]["name"] for a in body.get("modified_network_attachments", {}).get("network_attachment", [])
                  if a["host_nic"]["name"] not in {b["name"] for b in bonds}]
        names += [o["value"] for b in bonds for o in b["bonding"]["options"]["option"] if o["name"] == "primary"]
        missing = sorted(set(names) - known)
        return f"Cannot setup Networks. The following Network Interfaces do not exist on the Host: {', '.join(missing)}." \
            if missing else None

    def _advance(self, h: dict) -> dict:
        """Hosts move on as they are polled: installing -> maintenance; preparing_for_maintenance
        -> maintenance (unless VMs refuse to migrate)."""
        h["_polls"] += 1
        if h["name"] in self.stuck_in:
            h["status"] = self.stuck_in[h["name"]]
            if h["status"] == "install_failed":
                h["status_detail"] = "Host deploy failed: ansible playbook error"
        elif h["status"] == "installing" and h["_polls"] > self.install_polls:
            h["status"] = h.pop("_after_install", "maintenance")  # add_host is activate=false (checked in _add)
        elif h["status"] == "preparing_for_maintenance" and not self.vms.get(h["name"]) and \
                self.engine_vm_on != h["name"]:
            h["status"] = "maintenance"
        return h

    def _add(self, req: Request):
        body = req.json()
        if req.query.get("activate") != "false":
            return 400, {}, {"reason": "Bad Request", "detail": "[test fake expects activate=false]"}
        if not {"name", "address", "cluster"} <= set(body) or body.get("ssh", {}).get("authentication_method") != "publickey":
            return 400, {}, {"reason": "Bad Request", "detail": "[name, address, cluster and ssh publickey required]"}
        if self.by_name(body["name"]):
            return self._fault(409, "Cannot add Host. The Host name is already in use, please choose a unique name and try again.")
        host_id = self.add_existing(body["name"], body["cluster"]["name"], status="installing",
                                    hosted_engine=req.query.get("deploy_hosted_engine") == "true")
        self.hosts[host_id]["address"] = body["address"]
        if body["name"] in self.reinstalled:  # only NICs after host deploy: no bonds, VLANs or networks yet
            nics = [n for n in self.reinstalled[body["name"]]["nics"] if not n.get("bonding") and not n.get("vlan")]
            self.hosts[host_id]["_net"] = {"nics": nics, "attachments": [], "networks": []}
        return 201, {}, self._public(self.hosts[host_id])

    def _action(self, host: dict, action: str, req: Request):
        body = req.json() if req.body else {}
        if action == "deactivate":
            host["status"] = "preparing_for_maintenance"
            if self.engine_vm_on == host["name"]:  # the engine VM migrates to another hosted-engine host that is Up
                other = next((h["name"] for h in self.hosts.values() if h is not host and h["_he"]
                              and h["status"] == "up"), None)
                if other:
                    self.engine_vm_on = other
        elif action == "install":
            if host["status"] != "maintenance":
                return self._fault(409, f"Cannot install Host. Host is in {host['status']} status.")
            if _true(body.get("undeploy_hosted_engine"), False):
                host["_he"] = False
            host["status"], host["_polls"] = "installing", 0
            host["_after_install"] = "up" if _true(body.get("activate"), True) else "maintenance"
        elif action == "activate":
            if host["status"] != "maintenance":
                return self._fault(409, f"Cannot activate Host. Host is in {host['status']} status.")
            host["status"] = "up"
        elif action in ("nics", "networkattachments") and req.method == "GET":
            key = {"nics": ("nics", "host_nic"), "networkattachments": ("attachments", "network_attachment")}[action]
            items = host.get("_net", {}).get(key[0], [])
            return 200, {}, ({key[1]: items} if items else {})
        elif action == "fenceagents" and req.method == "GET":
            agents = [dict({k: v for k, v in a.items() if k != "password"}, id=f"agent-{i}",
                           host={"id": host["id"]}, encrypt_options=a.get("encrypt_options", False))
                      for i, a in enumerate(host.get("_fences", []))]
            return 200, {}, ({"agent": agents} if agents else {})
        elif action == "fenceagents":
            if body.get("type") not in FENCE_TYPES:
                return 400, {}, {"reason": "Bad Request", "detail": f"[Fence agent type {body.get('type')} is not supported]"}
            if not body.get("address") or body.get("order") is None:
                return 400, {}, {"reason": "Bad Request", "detail": "[FenceAgent [address, order] required for add]"}
            host["_fence"] = body
            host.setdefault("_fences", []).append(body)
            return 201, {}, dict({k: v for k, v in body.items() if k != "password"}, id=str(uuid.uuid4()))
        elif action == "setupnetworks":
            if host["status"] != "maintenance":
                return self._fault(409, "Cannot setup Networks. Host is not in maintenance.")
            problem = self._unknown_nics(host, body)
            if problem:
                return self._fault(400, problem)
            host["_networks"] = body
        elif action == "commitnetconfig":
            host["_committed"] = True
        else:
            return 404, {}, {"reason": "Not Found", "detail": f"[{action}]"}
        return 200, {}, {"status": "complete"}


def _true(value, default: bool) -> bool:
    """A boolean from a request, as the engine reads one (a JSON boolean or "true"/"false"/"1"/"0")."""
    if value is None:
        return default
    return str(value).lower() in ("true", "1")


def engine_scalars(body):
    """The answer as the engine writes it: every boolean as "true"/"false", every number as its
    decimal string; objects and lists kept (see the module docstring)."""
    if isinstance(body, dict):
        return {k: engine_scalars(v) for k, v in body.items()}
    if isinstance(body, list):
        return [engine_scalars(v) for v in body]
    if isinstance(body, bool):
        return "true" if body else "false"
    if isinstance(body, (int, float)):
        return str(body)
    return body
