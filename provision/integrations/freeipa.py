"""FreeIPA client on python-freeipa (JSON-RPC at /ipa/session/json after a form login at
/ipa/session/login_password), behind the Ipa protocol of ipa.py."""

from __future__ import annotations

import ipaddress

import requests
from python_freeipa import ClientMeta
from python_freeipa import exceptions as ipa_exc
from requests.adapters import HTTPAdapter
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from ..config import IpaConfig
from ..secretfiles import read_secret
from .http import cause
from .ipa import IpaError


class _TimeoutAdapter(HTTPAdapter):
    """python-freeipa sends without a timeout; a hung IPA server must not hang a rebuild."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def send(self, request, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().send(request, **kwargs)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(exc, ipa_exc.FreeIPAError) and getattr(exc, "code", None) in (502, 503, 504)


class FreeIpa:
    def __init__(self, cfg: IpaConfig, *, discover=None, timeout: float = 30.0, attempts: int = 4,
                 backoff: float = 0.5) -> None:
        self.cfg, self.discover = cfg, discover
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff
        self._client: ClientMeta | None = None
        self._server = cfg.server

    def validate(self) -> None:
        if not self.cfg.server and not self.cfg.domain:
            raise IpaError("[ipa] server (or domain, for SRV discovery) is not configured")
        read_secret(self.cfg.password_file, "PROVISION_IPA_PASSWORD", "ipa")

    @property
    def server(self) -> str:
        """The configured server, or the best one found by SRV (_ldap._tcp.<domain>) on first use."""
        if not self._server:
            found = self.discover(self.cfg.domain) if self.discover and self.cfg.domain else []
            if not found:
                raise IpaError(f"no [ipa] server configured and no _ldap._tcp.{self.cfg.domain} SRV record")
            self._server = found[0]
        return self._server

    def _login(self) -> ClientMeta:
        verify = str(self.cfg.ca_file) if self.cfg.ca_file else True
        client = ClientMeta(self.server, verify_ssl=verify, dns_discovery=False)
        adapter = _TimeoutAdapter(self.timeout)
        client._session.mount("https://", adapter)  # the library's own requests.Session
        try:
            client.login(self.cfg.username, read_secret(self.cfg.password_file, "PROVISION_IPA_PASSWORD", "ipa"))
        except ipa_exc.Unauthorized:
            raise IpaError(f"login as {self.cfg.username} refused (wrong password or locked)") from None
        self._client = client
        return client

    def _call(self, method: str, *args, **kwargs) -> dict:
        """Every JSON-RPC call: logs in on first use, logs in again once if the session expired,
        retries transient failures with backoff, maps IPA errors to IpaError with IPA's message."""
        call = retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(self.attempts),
                     wait=wait_exponential(multiplier=self.backoff, max=8), reraise=True)(self._once)
        try:
            return call(method, *args, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            why = "no answer in time" if isinstance(exc, requests.Timeout) else cause(exc)
            raise IpaError(f"https://{self._server}: {why}, cannot reach it ({method}; gave up after {self.attempts} "
                           "attempts)") from None
        except ipa_exc.FreeIPAError as exc:
            code = getattr(exc, "code", None)
            raise IpaError(f"{method}: {exc.message if hasattr(exc, 'message') else exc}"
                           + (f" ({code})" if code else "")) from None

    def _once(self, method: str, *args, **kwargs) -> dict:
        for attempt in (1, 2):
            client = self._client or self._login()
            try:
                return getattr(client, method)(*args, **kwargs)
            except ipa_exc.Unauthorized:
                if attempt == 2:
                    raise
                self._client = None  # session expired: log in again, once
        raise AssertionError("unreachable")

    def host_info(self, fqdn: str) -> dict | None:
        try:
            res = self._call("host_show", a_fqdn=fqdn)
        except IpaError as exc:
            if "(4001)" in str(exc):
                return None
            raise
        r = res["result"]
        return {"hostgroups": list(r.get("memberof_hostgroup", [])), "netgroups": list(r.get("memberof_netgroup", [])),
                "hbacrules": list(r.get("memberof_hbacrule", [])), "sudorules": list(r.get("memberof_sudorule", [])),
                "managedby": [h for h in r.get("managedby_host", []) if h != fqdn]}

    def host_del(self, fqdn: str) -> None:
        self._call("host_del", a_fqdn=fqdn, o_updatedns=self.cfg.updatedns)

    def dns_plan(self, fqdn: str, ips: list[str]) -> dict:
        """What host_add can ask of IPA's DNS, read without writing: whether IPA manages the host's
        forward zone and, per address, its reverse zone. A site whose PTRs live in corporate DNS has
        the forward zone only, and host_add --ip-address is then refused unless it says no_reverse
        (freeipa ipaserver/plugins/host.py, dns.add_records_for_host_validation)."""
        if not self.cfg.updatedns:
            return {"forward": False, "reverse": {ip: False for ip in ips}}
        zone = fqdn.partition(".")[2]
        try:
            self._call("dnszone_show", a_idnsname=zone + ".")
            forward = True
        except IpaError as exc:
            if "(4001)" not in str(exc):
                raise
            forward = False
        zones = [z["idnsname"][0].rstrip(".") for z in self._call("dnszone_find").get("result", [])] if forward else []
        return {"forward": forward,
                "reverse": {ip: any(reverse_name(ip).endswith("." + z) for z in zones) for ip in ips}}

    def host_add(self, fqdn: str, ip: str | None, ip6: str | None = None) -> str:
        """host_add creates one A or AAAA record from ip_address (and its PTR where IPA manages the
        reverse zone: no_reverse otherwise); the other family is added with dnsrecord_add, since
        host_del --updatedns removed both. Where IPA does not manage the host's zone, the host is
        added without DNS (force)."""
        first = ip or ip6
        plan = self.dns_plan(fqdn, [a for a in (ip, ip6) if a])
        if first and plan["forward"]:
            extra = {"o_ip_address": first} | ({} if plan["reverse"][first] else {"o_no_reverse": True})
        else:
            extra = {"o_force": True}
        res = self._call("host_add", a_fqdn=fqdn, o_random=True, **extra)
        if ip and ip6 and plan["forward"]:
            name, _, zone = fqdn.partition(".")
            self._call("dnsrecord_add", a_dnszoneidnsname=zone + ".", a_idnsname=name, o_aaaarecord=[ip6],
                       o_aaaa_extra_create_reverse=plan["reverse"][ip6])
        return res["result"]["randompassword"]

    def restore(self, fqdn: str, membership: dict) -> None:
        """hostgroup/netgroup_add_member, hbacrule/sudorule_add_host, host_add_managedby."""
        for cn in membership.get("hostgroups", []):
            self._call("hostgroup_add_member", a_cn=cn, o_host=[fqdn])
        for cn in membership.get("netgroups", []):
            self._call("netgroup_add_member", a_cn=cn, o_host=[fqdn])
        for cn in membership.get("hbacrules", []):
            self._call("hbacrule_add_host", a_cn=cn, o_host=[fqdn])
        for cn in membership.get("sudorules", []):
            self._call("sudorule_add_host", a_cn=cn, o_host=[fqdn])
        if membership.get("managedby"):
            self._call("host_add_managedby", a_fqdn=fqdn, o_host=list(membership["managedby"]))


def reverse_name(ip: str) -> str:
    """1.10.0.127.in-addr.arpa (no trailing dot)."""
    return ipaddress.ip_address(ip).reverse_pointer
