"""Fake FreeIPA JSON-RPC server.

Shapes from FreeIPA's public API docs and python-freeipa's client (client.py): a form login at
POST /ipa/session/login_password (user, password; a Referer header is required; a wrong
password answers 401 with X-IPA-Rejection-Reason: invalid-password; success sets the
ipa_session cookie), then POST /ipa/session/json with a Referer of https://<host>/ipa and body
{"method": m, "params": [[args], {options, "version"}]}, answered with the envelope
{"result": ..., "error": null | {"code", "name", "message", "data"}, "id", "principal", "version"}.
Error codes: 4001 NotFound, 4002 DuplicateEntry (ipalib/errors.py). Every call is first checked
against the command schema shipped in ipaclient (ipa_model.py) and refused as IPA would.

DNS zones: `zones` are the zones IPA manages (absolute names). By default the forward zone and the
lab's reverse zone; `forward_only=True` is the common site whose PTRs live in corporate DNS. As
freeipa's ipaserver/plugins/host.py (host_add.pre_callback -> dns.add_records_for_host_validation)
does, host_add with ip_address needs the host's forward zone in IPA ("DNS zone %(zone)s not found"),
and, unless no_reverse is set, the address's reverse zone too ("DNS reverse zone %(revzone)s for IP
address %(addr)s is not managed by this server", NotFound 4001); dnszone_find answers each zone as
{"idnsname": [name], ...}, dnszone_show an unknown zone with NotFound."""

from __future__ import annotations

import secrets

from .base import FakeHttpServer, Request
from .ipa_model import check_call


class FakeIpa(FakeHttpServer):
    def __init__(self, tls, password: str = "ipa-secret", realm: str = "LAB.EXAMPLE.COM",
                 forward_only: bool = False) -> None:
        super().__init__(tls)
        self.zones = {"lab.example.com."} | (set() if forward_only else {
            "0.127.in-addr.arpa.", "2.0.192.in-addr.arpa.", "8.b.d.0.1.0.0.2.ip6.arpa."})
        self.ptr: dict[str, str] = {}  # reverse name -> host, for zones IPA manages
        self.password, self.realm = password, realm
        self.sessions: set[str] = set()
        self.hosts: dict[str, dict] = {}
        self.hostgroups: dict[str, set[str]] = {"hypervisors": set(), "rack-0": set(), "rack-1": set(), "rack-2": set()}
        self.rpc: list[tuple[str, list, dict]] = []
        self.schema_violations: list[str] = []
        self.members: dict[str, dict[str, set[str]]] = {"netgroup": {}, "hbacrule": {}, "sudorule": {}}
        self.dns: dict[str, dict] = {}  # record name -> {"arecord": [...], "aaaarecord": [...]}

    def expire_sessions(self) -> None:
        self.sessions.clear()

    def add_host(self, fqdn: str, groups: list[str], **member_of) -> None:
        """member_of: netgroup=[...], hbacrule=[...], sudorule=[...], managedby=[hosts]."""
        self.hosts[fqdn] = {"fqdn": [fqdn], "managedby_host": [fqdn, *member_of.pop("managedby", [])]}
        for g in groups:
            self.hostgroups.setdefault(g, set()).add(fqdn)
        for kind, names in member_of.items():
            for cn in names:
                self.members[kind].setdefault(cn, set()).add(fqdn)

    def handle(self, req: Request):
        host = req.headers.get("host", "")
        if req.path == "/ipa/session/login_password" and req.method == "POST":
            if not req.headers.get("referer"):
                return 400, {}, "Missing HTTP referer"
            form = req.form()
            if form.get("user") != "admin" or form.get("password") != self.password:
                return 401, {"X-IPA-Rejection-Reason": "invalid-password"}, "Unauthorized"
            token = secrets.token_urlsafe(16)
            self.sessions.add(token)
            return 200, {"Set-Cookie": f"ipa_session=MagBearerToken={token}; path=/ipa; secure; HttpOnly"}, ""
        if req.path != "/ipa/session/json" or req.method != "POST":
            return 404, {}, "not found"
        if not req.headers.get("referer", "").startswith(f"https://{host}/ipa"):
            return 400, {}, "Missing HTTP referer"
        cookie = req.headers.get("cookie", "")
        token = cookie.split("MagBearerToken=", 1)[-1].split(";")[0] if "MagBearerToken=" in cookie else ""
        if token not in self.sessions:
            return 401, {}, "Unauthorized"
        body = req.json()
        method, (args, options) = body["method"], body["params"]
        if "version" not in options:
            return 200, {}, self._envelope(None, {"code": 3014, "name": "VersionError", "message": "no version"})
        self.rpc.append((method, args, options))
        refused = check_call(method, args, options)
        if refused:  # the command schema of the targeted API has no such command or option
            self.schema_violations.append(f"{method}: {refused['message']}")
            return 200, {}, self._envelope(None, dict(refused, data={}))
        try:
            result = getattr(self, f"_m_{method}")(args, options)
        except KeyError as exc:
            return 200, {}, self._envelope(None, exc.args[0])
        return 200, {}, self._envelope(result, None)

    def _envelope(self, result, error) -> dict:
        return {"result": result, "error": error, "id": 0, "principal": f"admin@{self.realm}", "version": "4.9.13"}

    @staticmethod
    def _err(code: int, name: str, message: str):
        return KeyError({"code": code, "name": name, "message": message, "data": {"reason": message}})

    def _groups_of(self, fqdn: str) -> list[str]:
        return sorted(g for g, members in self.hostgroups.items() if fqdn in members)

    def _m_host_show(self, args, options):
        fqdn = args[0]
        if fqdn not in self.hosts:
            raise self._err(4001, "NotFound", f"{fqdn}: host not found")
        found = {f"memberof_{k}": sorted(cn for cn, m in self.members[k].items() if fqdn in m) for k in self.members}
        return {"result": dict({k: v for k, v in self.hosts[fqdn].items() if not k.startswith("_")},
                               memberof_hostgroup=self._groups_of(fqdn), has_keytab=True,
                               **{k: v for k, v in found.items() if v}),
                "value": fqdn, "summary": None}

    def _m_host_del(self, args, options):
        fqdn = args[0]
        if fqdn not in self.hosts:
            raise self._err(4001, "NotFound", f"{fqdn}: host not found")
        del self.hosts[fqdn]
        for members in [*self.hostgroups.values(), *(m for k in self.members.values() for m in k.values())]:
            members.discard(fqdn)
        if options.get("updatedns"):
            self.dns.pop(fqdn, None)
        return {"result": {"failed": []}, "value": [fqdn], "summary": f'Deleted host "{fqdn}"'}

    def _m_host_add(self, args, options):
        fqdn = args[0]
        if fqdn in self.hosts:
            raise self._err(4002, "DuplicateEntry", f'host with name "{fqdn}" already exists')
        if not options.get("force") and not options.get("ip_address"):
            raise self._err(4019, "DNSNotARecordError", f"Host '{fqdn}' does not have corresponding DNS A/AAAA record")
        ip = options.get("ip_address")
        revzone = None
        if ip:
            zone = fqdn.partition(".")[2] + "."
            if zone not in self.zones:
                raise self._err(4001, "NotFound", f"DNS zone {zone} not found")
            revzone = self._reverse_zone(ip)
            if revzone is None and not options.get("no_reverse"):
                raise self._err(4001, "NotFound", f"DNS reverse zone {_reverse_name(ip).split('.', 1)[1]} for IP address "
                                f"{ip} is not managed by this server")
        otp = secrets.token_urlsafe(12)
        self.hosts[fqdn] = {"fqdn": [fqdn], "_otp": otp, "_ip": ip, "managedby_host": [fqdn]}
        if ip:
            kind = "aaaarecord" if ":" in ip else "arecord"
            self.dns.setdefault(fqdn, {}).setdefault(kind, []).append(ip)
            if revzone is not None and not options.get("no_reverse"):
                self.ptr[_reverse_name(ip)] = fqdn
        return {"result": {"dn": f"fqdn={fqdn},cn=computers,cn=accounts,dc=lab,dc=example,dc=com", "fqdn": [fqdn],
                           "has_keytab": False, "has_password": True, "randompassword": otp},
                "value": fqdn, "summary": f'Added host "{fqdn}"'}

    def _m_hostgroup_add_member(self, args, options):
        group = args[0]
        if group not in self.hostgroups:
            raise self._err(4001, "NotFound", f"{group}: host group not found")
        for fqdn in options.get("host", []):
            self.hostgroups[group].add(fqdn)
        return {"result": {"cn": [group], "member_host": sorted(self.hostgroups[group])},
                "failed": {"member": {"host": [], "hostgroup": []}}, "completed": len(options.get("host", []))}

    def _add_to(self, kind: str, args, options):
        cn = args[0]
        if cn not in self.members[kind]:
            raise self._err(4001, "NotFound", f"{cn}: {kind} not found")
        self.members[kind][cn] |= set(options.get("host", []))
        return {"result": {"cn": [cn]}, "failed": {"memberhost": {"host": [], "hostgroup": []}},
                "completed": len(options.get("host", []))}

    def _m_netgroup_add_member(self, args, options):
        return self._add_to("netgroup", args, options)

    def _m_hbacrule_add_host(self, args, options):
        return self._add_to("hbacrule", args, options)

    def _m_sudorule_add_host(self, args, options):
        return self._add_to("sudorule", args, options)

    def _m_host_add_managedby(self, args, options):
        fqdn = args[0]
        if fqdn not in self.hosts:
            raise self._err(4001, "NotFound", f"{fqdn}: host not found")
        self.hosts[fqdn]["managedby_host"] = sorted(set(self.hosts[fqdn]["managedby_host"]) | set(options.get("host", [])))
        return {"result": dict(self.hosts[fqdn]), "failed": {"managedby": {"host": []}}, "completed": 1}

    def _reverse_zone(self, ip: str) -> str | None:
        """The longest IPA-managed zone the address's reverse name is in."""
        rev = _reverse_name(ip)
        found = [z for z in self.zones if rev.endswith("." + z)]
        return max(found, key=len) if found else None

    def _m_dnszone_find(self, args, options):
        zones = [{"idnsname": [z], "idnszoneactive": True} for z in sorted(self.zones)]
        return {"result": zones, "count": len(zones), "truncated": False, "summary": f"{len(zones)} DNS zones matched"}

    def _m_dnszone_show(self, args, options):
        zone = args[0] if args[0].endswith(".") else args[0] + "."
        if zone not in self.zones:
            raise self._err(4001, "NotFound", f"{args[0]}.: DNS zone not found")
        return {"result": {"idnsname": [zone], "idnszoneactive": True}, "value": zone, "summary": None}

    def _m_dnsrecord_add(self, args, options):
        zone, name = args[0].rstrip("."), args[1]
        for ip in options.get("aaaarecord", []) if options.get("aaaa_extra_create_reverse") else []:
            if self._reverse_zone(ip) is None:
                raise self._err(4001, "NotFound", f"DNS reverse zone for IP address {ip} not found")
        rec = self.dns.setdefault(f"{name}.{zone}", {})
        for kind in ("arecord", "aaaarecord"):
            rec.setdefault(kind, [])
            rec[kind] += list(options.get(kind, []))
        return {"result": {"idnsname": [name], **rec}, "value": name, "summary": None}


def _reverse_name(ip: str) -> str:
    import ipaddress
    return ipaddress.ip_address(ip).reverse_pointer + "."
