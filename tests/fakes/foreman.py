"""Fake Satellite (Foreman API v2 + Katello).

Shapes from the Foreman API v2 docs (apidoc for hosts, organizations, locations,
registration_commands): index answers {"total", "subtotal", "page", "per_page", "search",
"sort", "results"}; DELETE /api/hosts/:id answers the deleted host; POST
/api/registration_commands answers {"registration_command": "..."}; HTTP basic auth, and a
wrong password answers 401 {"error": {"message": "Unable to authenticate user admin"}}.

POST /api/registration_commands takes exactly the parameters of the Foreman API v2 documentation
(apidoc v2 registration_commands#create, Foreman 3.x) plus Katello's (activation_keys,
lifecycle_environment_id, force, ignore_subman_errors): anything else is refused with 422, as
Foreman's parameter filter would not pass it on. GET /api/hosts/:id carries Katello's
content_facet_attributes (content view and lifecycle environment), which PUT /api/hosts/:id
updates. The facet is rendered as Katello 4.x does (app/views/katello/api/v2/content_facet/
base.json.rabl): `content_view {id, name, composite}`, `lifecycle_environment {id, name}` and
`content_view_environments [{content_view, lifecycle_environment, candlepin_name}]`, with no flat
`*_id`/`*_name` members (those were Katello 3.x); PUT takes `content_view_id` +
`lifecycle_environment_id` or, for several, `content_view_environments` (candlepin labels)."""

from __future__ import annotations

import base64
import re

from .base import FakeHttpServer, Request

# apidoc v2: registration_commands#create (Foreman) + the Katello extension
REGISTRATION_PARAMS = {
    "organization_id", "location_id", "hostgroup_id", "operatingsystem_id", "smart_proxy_id", "setup_insights",
    "setup_remote_execution", "setup_remote_execution_pull", "remote_execution_interface", "jwt_expiration",
    "insecure", "packages", "update_packages", "repo", "repo_gpg_key_url", "repo_data", "download_utility",
    "activation_keys", "lifecycle_environment_id", "force", "ignore_subman_errors",
}


class FakeForeman(FakeHttpServer):
    def __init__(self, tls, password: str = "sat-secret") -> None:
        super().__init__(tls)
        self.password = password
        self.hosts: dict[int, dict] = {}
        self.orgs = {1: {"id": 1, "name": "Lab"}}
        self.hostgroups = {7: {"id": 7, "name": "rhvh", "title": "hypervisors/rhvh"}}
        self.activation_keys = {1: {"rhvh-4.4"}}  # organization id -> key names (Katello)
        self.locations = {2: {"id": 2, "name": "Default Location"}}
        self.next_id = 100

    def add_host(self, fqdn: str, **placement) -> None:
        """placement: hostgroup_id/hostgroup_title, lifecycle_environment_id/_name, content_view_id/_name."""
        self.next_id += 1
        facet = {k: placement.pop(k) for k in list(placement) if k.startswith(("lifecycle_", "content_view"))}
        cves = [((facet["content_view_id"], facet.get("content_view_name")),
                 (facet["lifecycle_environment_id"], facet.get("lifecycle_environment_name")))] if facet else []
        self.names = getattr(self, "names", {})  # ("cv" | "le", id) -> name, as Katello knows them
        if facet:
            self.names[("cv", facet["content_view_id"])] = facet.get("content_view_name")
            self.names[("le", facet["lifecycle_environment_id"])] = facet.get("lifecycle_environment_name")
        self.hosts[self.next_id] = {"id": self.next_id, "name": fqdn, "organization_id": 1, "organization_name": "Lab",
                                    "location_id": 2, "location_name": "Default Location", **placement,
                                    "_cves": cves}
        self.registrations: list[dict] = getattr(self, "registrations", [])

    @staticmethod
    def _show(host: dict) -> dict:
        out = {k: v for k, v in host.items() if not k.startswith("_")}
        cves = host.get("_cves", [])
        if cves:
            rendered = [{"content_view": {"id": cv[0], "name": cv[1], "composite": False, "content_view_default": False},
                         "lifecycle_environment": {"id": le[0], "name": le[1], "lifecycle_environment_library": False},
                         "candlepin_name": f"{le[1]}/{cv[1]}"} for cv, le in cves]
            facet = {"id": host["id"], "uuid": f"uuid-{host['id']}", "content_view_environments": rendered,
                     "multi_content_view_environment": len(cves) > 1}
            if len(cves) == 1:  # the single CV/LCE, for backward compatibility
                facet["content_view"] = {"id": cves[0][0][0], "name": cves[0][0][1], "composite": False}
                facet["lifecycle_environment"] = {"id": cves[0][1][0], "name": cves[0][1][1]}
            out["content_facet_attributes"] = facet
        return out

    @staticmethod
    def _index(items: list[dict], search: str) -> dict:
        return {"total": len(items), "subtotal": len(items), "page": 1, "per_page": 20, "search": search,
                "sort": {"by": None, "order": None}, "results": items}

    def handle(self, req: Request):
        auth = req.headers.get("authorization", "")
        ok = auth.startswith("Basic ") and base64.b64decode(auth[6:]).decode() == f"admin:{self.password}"
        if not ok:
            return 401, {}, {"error": {"message": "Unable to authenticate user admin"}}
        search = req.query.get("search", "")
        m = re.fullmatch(r'name="([^"]*)"', search)
        wanted = m.group(1) if m else None
        if req.method == "GET" and req.path in ("/api/hosts", "/api/organizations", "/api/locations"):
            pool = {"/api/hosts": self.hosts, "/api/organizations": self.orgs, "/api/locations": self.locations}[req.path]
            items = [self._show(v) if req.path == "/api/hosts" else v for v in pool.values()]
            return 200, {}, self._index([v for v in items if wanted is None or v["name"] == wanted], search)
        hg = re.fullmatch(r"/api/hostgroups/(\d+)", req.path)
        if hg and req.method == "GET":
            group = self.hostgroups.get(int(hg.group(1)))
            return (200, {}, group) if group else (404, {}, {"error": {"message": "Resource hostgroup not found"}})
        if req.path == "/katello/api/activation_keys" and req.method == "GET":  # Katello: organization_id required
            if not req.query.get("organization_id", "").isdigit():
                return 422, {}, {"displayMessage": "organization_id is required", "errors": ["organization_id"]}
            keys = [{"id": i, "name": k, "organization_id": int(req.query["organization_id"])}
                    for i, k in enumerate(sorted(self.activation_keys.get(int(req.query["organization_id"]), ())))]
            return 200, {}, self._index(keys, req.query.get("search", ""))
        m = re.fullmatch(r"/api/hosts/(\d+)", req.path)
        if m and req.method == "GET":
            host = self.hosts.get(int(m.group(1)))
            return (200, {}, self._show(host)) if host else (404, {}, {"error": {"message": "Resource host not found"}})
        if m and req.method == "PUT":
            host = self.hosts.get(int(m.group(1)))
            if not host:
                return 404, {}, {"error": {"message": "Resource host not found"}}
            facet = req.json().get("host", {}).get("content_facet_attributes", {})
            if "content_view_environments" in facet:
                host["_cves"] = [((None, label.split("/", 1)[1]), (None, label.split("/", 1)[0]))
                                 for label in facet["content_view_environments"]]
            elif facet:
                if not {"content_view_id", "lifecycle_environment_id"} <= set(facet):
                    return 422, {}, {"error": {"message": "content view and lifecycle environment must be set together"}}
                cv, le = facet["content_view_id"], facet["lifecycle_environment_id"]
                host["_cves"] = [((cv, self.names.get(("cv", cv))), (le, self.names.get(("le", le))))]
            return 200, {}, self._show(host)
        if m and req.method == "DELETE":
            host = self.hosts.pop(int(m.group(1)), None)
            return (200, {}, self._show(host)) if host else (404, {}, {"error": {"message": "Resource host not found"}})
        if req.path == "/api/registration_commands" and req.method == "POST":
            body = req.json().get("registration_command", {})
            unknown = sorted(set(body) - REGISTRATION_PARAMS)
            if unknown:
                return 422, {}, {"error": {"message": f"Unknown parameter(s): {', '.join(unknown)}"}}
            self.registrations = [*getattr(self, "registrations", []), body]
            if body.get("organization_id") not in self.orgs or not body.get("activation_keys"):
                return 422, {}, {"error": {"message": "Organization and activation keys are required"}}
            keys = ",".join(body["activation_keys"])
            return 200, {}, {"registration_command":
                             f"set -o pipefail && curl -sS 'https://satellite.lab.example.com/register?activation_keys={keys}"
                             f"&location_id={body.get('location_id')}&organization_id={body['organization_id']}' "
                             "-H 'Authorization: Bearer eyJfake' | bash"}
        return 404, {}, {"error": {"message": "Route not found"}}
