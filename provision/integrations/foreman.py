"""Satellite / Foreman API v2 client (requests, basic auth), behind the Satellite protocol.

Wire format (Foreman API v2 docs): index calls return {"total", "subtotal", "page", "per_page",
"search", "results": [...]}; errors {"error": {"message": ...}}; POST /api/registration_commands
returns {"registration_command": "curl ... | bash"} (Satellite 6.9+ global registration)."""

from __future__ import annotations

import shlex

from ..config import SatelliteConfig
from ..secretfiles import read_secret
from .http import HttpClient
from .satellite import SatelliteError


class ForemanSatellite:
    def __init__(self, cfg: SatelliteConfig, *, timeout: float = 30.0, attempts: int = 4,
                 backoff: float = 0.5) -> None:
        self.cfg = cfg
        self.http = HttpClient("satellite", cfg.url or "", error=SatelliteError, verify=str(cfg.ca_file) if cfg.ca_file else True,
                               timeout=timeout, attempts=attempts, backoff=backoff)

    def validate(self) -> None:
        if not self.cfg.url:
            raise SatelliteError("[satellite] url is not configured")
        if not self.cfg.organization or not self.cfg.activation_keys:
            raise SatelliteError("[satellite] organization and activation_keys are required")
        read_secret(self.cfg.password_file, "PROVISION_SATELLITE_PASSWORD", "satellite")

    def _api(self, method: str, path: str, **kwargs) -> dict:
        auth = (self.cfg.username, read_secret(self.cfg.password_file, "PROVISION_SATELLITE_PASSWORD", "satellite"))
        resp = self.http.request(method, path, auth=auth, headers={"Accept": "application/json"}, **kwargs)
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if resp.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            message = (err.get("message") or err.get("full_messages") or "") if isinstance(err, dict) else err
            raise SatelliteError(f"{method} {path}: HTTP {resp.status_code}: {message or resp.text[:200]}")
        return data

    def _find(self, collection: str, name: str) -> list[dict]:
        return self._api("GET", f"/api/{collection}", params={"search": f'name="{name}"'}).get("results", [])

    def host_info(self, fqdn: str) -> dict | None:
        """Where the host sits before it is deleted: organization, location, host group, and (Katello)
        lifecycle environment and content view, from GET /api/hosts/:id (content_facet_attributes)."""
        hosts = [h for h in self._find("hosts", fqdn) if h.get("name") == fqdn]
        if not hosts:
            return None
        h = self._api("GET", f"/api/hosts/{hosts[0]['id']}")
        return {k: v for k, v in {
            "organization_id": h.get("organization_id"), "organization": h.get("organization_name"),
            "location_id": h.get("location_id"), "location": h.get("location_name"),
            "hostgroup_id": h.get("hostgroup_id"), "hostgroup": h.get("hostgroup_title"),
            **content_placement(h.get("content_facet_attributes") or {}),
        }.items() if v is not None}

    def preflight(self, fqdn: str) -> str:
        """Before anything is deleted: the host's placement (host group, organization, location)
        still exists, and so does every configured activation key in its organization (GET
        /api/hostgroups/:id, /api/organizations, /katello/api/activation_keys; Foreman API v2 and
        Katello API docs)."""
        placement = self.host_info(fqdn) or {}
        found = []
        if placement.get("hostgroup_id"):
            self._api("GET", f"/api/hostgroups/{placement['hostgroup_id']}")  # 404 -> SatelliteError
            found.append(f"host group {placement.get('hostgroup') or placement['hostgroup_id']}")
        org = placement.get("organization_id") or self._one("organizations", self.cfg.organization)
        keys = {k["name"] for k in self._api("GET", "/katello/api/activation_keys",
                                               params={"organization_id": org, "per_page": 1000}).get("results", [])}
        missing = [k for k in self.cfg.activation_keys if k not in keys]
        if missing:
            raise SatelliteError(f"activation key(s) {', '.join(missing)} not found in organization {org}")
        found.append(f"activation keys {', '.join(self.cfg.activation_keys)}")
        where = "registered" if placement else "not registered (it registers into the configured organization)"
        return f"{fqdn} {where}; " + ", ".join(found)

    def delete_host(self, fqdn: str) -> bool:
        hosts = [h for h in self._find("hosts", fqdn) if h.get("name") == fqdn]
        for h in hosts:
            self._api("DELETE", f"/api/hosts/{h['id']}")  # Katello removes the content host too
        return bool(hosts)

    def registration_command(self, fqdn: str, placement: dict | None = None) -> str:
        """Global registration (POST /api/registration_commands) back into the recorded organization,
        location, host group and lifecycle environment (else the configured organization/location)."""
        if self.cfg.registration == "rhsm":
            return self.rhsm_command()
        placement = placement or {}
        org = placement.get("organization_id") or self._one("organizations", self.cfg.organization)
        body = {"organization_id": org, "activation_keys": list(self.cfg.activation_keys),
                "insecure": self.cfg.insecure}
        if placement.get("location_id") or self.cfg.location:
            body["location_id"] = placement.get("location_id") or self._one("locations", self.cfg.location)
        for key in ("hostgroup_id", "lifecycle_environment_id"):
            if placement.get(key):
                body[key] = placement[key]
        data = self._api("POST", "/api/registration_commands", json={"registration_command": body})
        command = data.get("registration_command")
        if not command:
            raise SatelliteError("POST /api/registration_commands: no registration_command in the reply")
        return command

    def restore_content(self, fqdn: str, placement: dict) -> bool:
        """Put the re-registered host back on its content view and lifecycle environment (an
        activation key may name others): PUT /api/hosts/:id content_facet_attributes. False if the
        host is not registered (yet)."""
        if placement.get("content_view_environments"):  # Katello 4.10+ multi-CV: the whole list, by label
            wanted = {"content_view_environments": list(placement["content_view_environments"])}
        else:
            wanted = {k: placement[k] for k in ("content_view_id", "lifecycle_environment_id") if placement.get(k)}
        hosts = [h for h in self._find("hosts", fqdn) if h.get("name") == fqdn]
        if not hosts:
            return False
        if wanted:
            self._api("PUT", f"/api/hosts/{hosts[0]['id']}", json={"host": {"content_facet_attributes": wanted}})
        return True

    def _one(self, collection: str, name: str | None) -> int:
        found = [r for r in self._find(collection, name or "") if r.get("name") == name]
        if len(found) != 1:
            raise SatelliteError(f"{collection[:-1]} {name!r}: found {len(found)}, expected exactly one")
        return found[0]["id"]

    def rhsm_command(self) -> str:
        url = self.cfg.url or ""
        org = shlex.quote(self.cfg.organization or "")
        keys = shlex.quote(",".join(self.cfg.activation_keys))
        return (f"rpm -Uvh {shlex.quote(url + '/pub/katello-ca-consumer-latest.noarch.rpm')} && "
                f"subscription-manager register --org={org} --activationkey={keys}")


def content_placement(facet: dict) -> dict:
    """Content view and lifecycle environment from a host's content facet, in each shape Katello
    has rendered it (app/views/katello/api/v2/content_facet/base.json.rabl):
    - 4.x: `content_view: {id, name}` and `lifecycle_environment: {id, name}` (the single CV/LCE,
      kept for backward compatibility), and `content_view_environments: [{content_view: {id, name},
      lifecycle_environment: {id, name}, candlepin_name}]`, several when
      `multi_content_view_environment` is true;
    - 3.x: flat `content_view_id`/`_name`, `lifecycle_environment_id`/`_name`."""
    cves = facet.get("content_view_environments") or []
    first = cves[0] if cves else {}
    view = facet.get("content_view") or first.get("content_view") or {}
    env = facet.get("lifecycle_environment") or first.get("lifecycle_environment") or {}
    out = {"content_view_id": view.get("id", facet.get("content_view_id")),
           "content_view": view.get("name", facet.get("content_view_name")),
           "lifecycle_environment_id": env.get("id", facet.get("lifecycle_environment_id")),
           "lifecycle_environment": env.get("name", facet.get("lifecycle_environment_name"))}
    if len(cves) > 1:
        out["content_view_environments"] = [c["candlepin_name"] for c in cves if c.get("candlepin_name")]
    return out
