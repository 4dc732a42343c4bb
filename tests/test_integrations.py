"""Real clients against fakes that speak each system's wire format over HTTPS (DNS over UDP),
with fault injection: N x 503, a hang past the timeout, an expired token/session, a wrong password."""

from __future__ import annotations

import pytest
import yaml

from provision.config import EngineConfig, IpaConfig, SatelliteConfig
from provision.domain import parse_nodes
from provision.integrations.dns import DnsChecker
from provision.integrations.engine import EngineError
from provision.integrations.foreman import ForemanSatellite
from provision.integrations.freeipa import FreeIpa
from provision.integrations.ipa import IpaError
from provision.integrations.ovirt import OvirtEngine, setup_networks_body
from provision.integrations.satellite import SatelliteError

from .conftest import EXAMPLE
from .fakes.dnsserver import FakeDns
from .fakes.foreman import FakeForeman
from .fakes.ipa import FakeIpa
from .fakes.ovirt import PUBKEY, FakeOvirt
from .fakes.tls import make_tls

FACTS = parse_nodes(yaml.safe_load(EXAMPLE.read_text()))[0].facts
FAST = {"timeout": 2.0, "attempts": 3, "backoff": 0.01}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("tls"))


def secret(tmp_path, name, value):
    p = tmp_path / name
    p.write_text(value + "\n")
    return p


# -- oVirt engine --------------------------------------------------------------------------
@pytest.fixture
def ovirt(tls):
    fake = FakeOvirt(tls)
    yield fake
    fake.close()


def engine_client(fake, tls, tmp_path, password="engine-secret") -> OvirtEngine:
    cfg = EngineConfig(url=f"{fake.url}/ovirt-engine", password_file=secret(tmp_path, "e.pw", password), ca_file=tls.ca)
    return OvirtEngine(cfg, poll=0.01, **FAST)


IPMI_AGENT = {"type": "ipmilan", "address": "10.1.1.3", "port": 623, "username": "admin", "password": "x",
              "order": 1, "options": {"option": [{"name": "lanplus", "value": "1"}, {"name": "power_wait", "value": "4"}]}}
PDU_AGENT = {"type": "apc_snmp", "address": "pdu-7.lab.example.com", "port": 161, "username": "apc", "password": "y",
             "order": 2, "options": {"option": [{"name": "port", "value": "12"}]}}


def test_engine_drain_remove_add_fence_networks_activate(ovirt, tls, tmp_path):
    old = ovirt.add_existing("rhvnode3", "ocpcluster", fence_agents=[PDU_AGENT, IPMI_AGENT])
    ovirt.add_existing("rhvnode4", "ocpcluster")
    e = engine_client(ovirt, tls, tmp_path)
    host = e.find_host("rhvnode3")
    assert (host.id, host.status) == (old, "up")
    assert host.hosted_engine is False and host.gluster is False  # "false" from the engine is not True
    agents = e.fence_agents(old)  # every scalar came as a string; read as the SDK reads them
    assert agents == [{"type": "ipmilan", "address": "10.1.1.3", "port": 623, "username": "admin", "order": 1,
                       "encrypt_options": False, "options": {"lanplus": "1", "power_wait": "4"}},
                      {"type": "apc_snmp", "address": "pdu-7.lab.example.com", "port": 161, "username": "apc",
                       "order": 2, "encrypt_options": False, "options": {"port": "12"}}]
    assert {h.name for h in e.cluster_hosts("ocpcluster")} == {"rhvnode3", "rhvnode4"}
    assert e.find_host("nope") is None
    e.deactivate(old)
    assert e.wait_status(old, {"maintenance"}, 5).status == "maintenance"
    e.remove(old)
    new = e.add_host("rhvnode3", "rhvnode3.lab.example.com", "ocpcluster")
    e.add_fence_agent(new.id, agents[0], "bmc-pw")
    e.add_fence_agent(new.id, agents[0], "bmc-pw")  # a resumed step: no second agent
    assert len(ovirt.hosts[new.id]["_fences"]) == 1
    assert e.wait_status(new.id, {"maintenance"}, 5).status == "maintenance"
    e.setup_networks(new.id, FACTS)
    e.activate(new.id)
    assert e.wait_status(new.id, {"up"}, 5).status == "up"
    h = ovirt.hosts[new.id]
    assert h["_fence"] == {"address": "10.1.1.3", "port": 623, "username": "admin", "password": "bmc-pw",
                           "type": "ipmilan", "order": 1,
                           "options": {"option": [{"name": "lanplus", "value": "1"}, {"name": "power_wait", "value": "4"}]}}
    assert h["power_management"] == {"enabled": True} and h["_committed"] is True
    order = [(m, a) for m, a, _ in h["_log"] if a and m == "POST"]
    assert order == [("POST", "fenceagents"), ("POST", "setupnetworks"), ("POST", "commitnetconfig"), ("POST", "activate")]
    assert e.ssh_public_key() == PUBKEY
    token_calls = [r for r in ovirt.requests if r.path.endswith("/sso/oauth/token")]
    assert len(token_calls) == 1 and "engine-secret" not in str(ovirt.requests[-1].headers)


def test_engine_capture_reads_the_management_role_from_the_hosts_cluster(ovirt, tls, tmp_path):
    from provision.capture.engine import facts_from_engine

    from .fakes.ovirt_json import engine_json

    host_id = ovirt.add_existing("rhvnode3", "ocpcluster")
    ovirt.hosts[host_id]["_net"] = engine_json(FACTS)
    e = engine_client(ovirt, tls, tmp_path)
    dc_view = e._api("GET", "/networks")["network"]
    assert not any("management" in n["usages"]["usage"] for n in dc_view)  # as on a real engine
    raw = e.host_network_json(host_id)
    assert raw["cluster_id"] == ovirt.clusters["ocpcluster"]
    facts = facts_from_engine(raw, FACTS)
    assert facts.management.network == "ovirtmgmt" and facts == FACTS
    raw["networks"] = dc_view  # the data-center view: the message blames the lookup, not the facts
    with pytest.raises(Exception, match="names no management network for cluster"):
        facts_from_engine(raw, FACTS)


@pytest.mark.parametrize("method,path,query,body,problem", [
    ("DELETE", "/hosts/h1", {"undeploy_hosted_engine": "true"}, None, "not one of HostService.remove's"),
    ("POST", "/hosts/h1/frobnicate", {}, {}, "HostService has no action 'frobnicate'"),
    ("POST", "/hosts/h1/setupnetworks", {}, {"modified_bonds": {"host_nic": [{"name": "bond0", "slaves": []}]}},
     "slaves: not a member of HostNic"),
    ("POST", "/hosts", {"activate": "false", "deploy": "true"}, {"name": "n"}, "query parameter 'deploy'"),
    ("GET", "/hosts/h1/nics/n1/frobs", {}, None, "HostNicService has no action 'frobs'"),
    ("GET", "/hosts/h1/frobs/x", {}, None, "no service frobs/x"),
])
def test_the_fake_engine_refuses_what_the_published_model_lacks(ovirt, tls, tmp_path, method, path, query, body,
                                                                problem):
    e = engine_client(ovirt, tls, tmp_path)
    with pytest.raises(EngineError, match="not in the API model"):
        e._api(method, path, body, params=query)
    assert any(problem in p for p in ovirt.model_violations), ovirt.model_violations


def test_setupnetworks_body_carries_bonds_options_and_vlan_ip():
    body = setup_networks_body(FACTS)
    bonds = {b["name"]: b for b in body["modified_bonds"]["host_nic"]}
    assert bonds["bond0"]["bonding"]["options"]["option"] == [
        {"name": "mode", "value": "4"}, {"name": "lacp_rate", "value": "fast"}, {"name": "miimon", "value": "100"},
        {"name": "xmit_hash_policy", "value": "layer3+4"}]
    assert bonds["bond1"]["bonding"]["slaves"] == {"host_nic": [{"name": "ens1f0"}, {"name": "ens1f1"}]}
    assert {"name": "mode", "value": "1"} in bonds["bond1"]["bonding"]["options"]["option"]
    atts = {a["network"]["name"]: a for a in body["modified_network_attachments"]["network_attachment"]}
    assert set(atts) == {"vmnet", "storage"}  # management is set up by host deploy
    assert atts["storage"]["host_nic"] == {"name": "bond1"}  # VLAN 20 comes with the network
    assert atts["storage"]["ip_address_assignments"]["ip_address_assignment"] == [
        {"assignment_method": "static", "ip": {"address": "198.51.100.13", "netmask": "255.255.255.0", "version": "v4"}}]
    assert body["check_connectivity"] is True


def test_engine_renews_an_expired_token(ovirt, tls, tmp_path):
    ovirt.add_existing("rhvnode3", "ocpcluster")
    e = engine_client(ovirt, tls, tmp_path)
    assert e.find_host("rhvnode3")
    ovirt.expire_tokens()
    assert e.find_host("rhvnode3")
    assert len([r for r in ovirt.requests if r.path.endswith("/sso/oauth/token")]) == 2


def test_engine_scalars_are_strings_and_are_read_as_the_sdk_reads_them(ovirt, tls, tmp_path):
    """The engine writes `"configured": "false"` and `"gluster_service": "false"`; bool("false") is
    True, which took every host for a hosted-engine host and every cluster for a gluster one."""
    plain = ovirt.add_existing("rhvnode3", "ocpcluster")
    he = ovirt.add_existing("rhvnode4", "legacy", hosted_engine=True)
    ovirt.gluster_clusters.add("legacy")
    e = engine_client(ovirt, tls, tmp_path)
    raw = e._api("GET", f"/hosts/{plain}", params={"all_content": "true"})
    assert raw["hosted_engine"] == {"configured": "false", "active": "false"} and raw["port"] == "54321"
    assert e._api("GET", f"/clusters/{ovirt.clusters['ocpcluster']}")["gluster_service"] == "false"
    assert (e.get_host(plain).hosted_engine, e.get_host(plain).gluster) == (False, False)
    assert (e.get_host(he).hosted_engine, e.get_host(he).gluster) == (True, True)
    from provision.integrations.ovirtjson import boolean, integer
    assert [boolean(v, "f") for v in ("true", "FALSE", "1", "0", None, True)] == [True, False, True, False, False, True]
    assert [integer(v, "f") for v in ("1500", "0", None, "", 7)] == [1500, 0, None, None, 7]
    ovirt.hosts[plain]["_he"] = "yes"  # a value the engine never writes is named, never guessed
    with pytest.raises(EngineError, match="hosted_engine.configured: 'yes' is not a boolean"):
        e.get_host(plain)


def test_undeploy_reinstalls_with_activate_false_so_the_host_stays_in_maintenance(ovirt, tls, tmp_path):
    """HostService.install defaults activate to true: the host came back Up, took VMs, and the wait
    for maintenance ran out after 1,800 s."""
    hid = ovirt.add_existing("rhvnode4", "ocpcluster", hosted_engine=True)
    ovirt.add_existing("rhvnode8", "ocpcluster", hosted_engine=True)
    e = engine_client(ovirt, tls, tmp_path)
    e.deactivate(hid)
    e.wait_status(hid, {"maintenance"}, 5)
    e.undeploy_hosted_engine(hid)
    host = e.wait_status(hid, {"maintenance", "up"}, 5)
    assert (host.status, host.hosted_engine) == ("maintenance", False)
    _, _, body = next(x for x in ovirt.hosts[hid]["_log"] if x[1] == "install")
    assert body["activate"] is False and body["undeploy_hosted_engine"] is True and ovirt.model_violations == []
    ovirt.hosts[hid]["_he"] = True  # what the old call (no activate) did: the fake follows the SDK's default
    e._api("POST", f"/hosts/{hid}/install", {"undeploy_hosted_engine": True, "ssh": {"authentication_method": "publickey"}})
    assert e.wait_status(hid, {"maintenance", "up"}, 5).status == "up"


def test_engine_retries_503_then_succeeds_and_gives_up_with_a_bound(ovirt, tls, tmp_path):
    ovirt.add_existing("rhvnode3", "ocpcluster")
    e = engine_client(ovirt, tls, tmp_path)
    ovirt.inject("503", "/ovirt-engine/api/hosts", times=2)
    assert e.find_host("rhvnode3").name == "rhvnode3"
    ovirt.inject("503", "/ovirt-engine/api/hosts", times=10)
    with pytest.raises(EngineError, match="HTTP 503 .gave up after 3 attempts"):
        e.find_host("rhvnode3")


def test_engine_hang_past_timeout_is_bounded(ovirt, tls, tmp_path):
    e = engine_client(ovirt, tls, tmp_path)
    ovirt.inject("hang", "/ovirt-engine/sso", times=3, seconds=3)
    with pytest.raises(EngineError, match="no answer within 2 s .gave up after 3 attempts"):
        e.find_host("rhvnode3")


def test_engine_wrong_password_and_faults_carry_the_engines_words(ovirt, tls, tmp_path):
    bad = engine_client(ovirt, tls, tmp_path, password="wrong")
    with pytest.raises(EngineError) as exc:
        bad.find_host("x")
    assert "username or password is incorrect" in str(exc.value) and "wrong" not in str(exc.value)
    hid = ovirt.add_existing("rhvnode3", "ocpcluster")
    e = engine_client(ovirt, tls, tmp_path)
    with pytest.raises(EngineError, match="Cannot remove Host. Host is in Up status."):
        e.remove(hid)


def test_engine_install_failed_and_vms_that_do_not_migrate(ovirt, tls, tmp_path):
    hid = ovirt.add_existing("rhvnode3", "ocpcluster")
    ovirt.vms["rhvnode3"] = ["db01", "web02"]
    e = engine_client(ovirt, tls, tmp_path)
    e.deactivate(hid)
    with pytest.raises(EngineError, match="still preparing_for_maintenance .*VMs still on it .did not migrate.: db01, web02"):
        e.wait_status(hid, {"maintenance"}, 0.2)
    ovirt.stuck_in["rhvnode3"] = "install_failed"
    with pytest.raises(EngineError, match="install_failed: Host deploy failed"):
        e.wait_status(hid, {"maintenance"}, 5)


# -- FreeIPA -------------------------------------------------------------------------------
@pytest.fixture
def ipa(tls):
    fake = FakeIpa(tls)
    fake.members["netgroup"]["ng-hypervisors"] = set()
    fake.members["hbacrule"]["allow-ops"] = set()
    fake.members["sudorule"]["ops-root"] = set()
    fake.add_host("rhvnode3.lab.example.com", ["hypervisors", "rack-0"], netgroup=["ng-hypervisors"],
                  hbacrule=["allow-ops"], sudorule=["ops-root"], managedby=["mgmt1.lab.example.com"])
    yield fake
    fake.close()


def ipa_client(fake, tls, tmp_path, password="ipa-secret") -> FreeIpa:
    server = fake.url.removeprefix("https://")
    cfg = IpaConfig(server=server, password_file=secret(tmp_path, "i.pw", password), ca_file=tls.ca,
                    domain="lab.example.com", realm="LAB.EXAMPLE.COM")
    return FreeIpa(cfg, **FAST)


def test_ipa_record_delete_add_restore(ipa, tls, tmp_path):
    """The whole identity: host groups, netgroups, HBAC and sudo rules, managedby, A and AAAA."""
    c = ipa_client(ipa, tls, tmp_path)
    fqdn = "rhvnode3.lab.example.com"
    recorded = c.host_info(fqdn)
    assert recorded == {"hostgroups": ["hypervisors", "rack-0"], "netgroups": ["ng-hypervisors"],
                        "hbacrules": ["allow-ops"], "sudorules": ["ops-root"], "managedby": ["mgmt1.lab.example.com"]}
    c.host_del(fqdn)
    assert c.host_info(fqdn) is None
    otp = c.host_add(fqdn, "192.0.2.13", "2001:db8::13")
    assert otp == ipa.hosts[fqdn]["_otp"] and ipa.hosts[fqdn]["_ip"] == "192.0.2.13"
    assert ipa.dns[fqdn] == {"arecord": ["192.0.2.13"], "aaaarecord": ["2001:db8::13"]}
    c.restore(fqdn, recorded)
    assert c.host_info(fqdn) == recorded
    methods = [m for m, _, _ in ipa.rpc]
    assert ipa.ptr == {"13.2.0.192.in-addr.arpa.": fqdn}  # IPA manages the reverse zone: host_add made the PTR
    assert methods == ["host_show", "host_del", "host_show", "dnszone_show", "dnszone_find", "host_add",
                       "dnsrecord_add", "hostgroup_add_member",
                       "hostgroup_add_member", "netgroup_add_member", "hbacrule_add_host", "sudorule_add_host",
                       "host_add_managedby", "host_show"]
    assert ipa.schema_violations == []
    _, args, opts = ipa.rpc[1]
    assert args == [fqdn] and opts["updatedns"] is True and opts["version"] == "2.253"
    login = [r for r in ipa.requests if r.path == "/ipa/session/login_password"]
    assert len(login) == 1 and all(r.headers.get("referer") for r in ipa.requests)


def test_ipa_without_reverse_zones_re_adds_the_host_with_no_reverse(tls, tmp_path):
    """The common site: IPA manages the forward zone, the PTRs live in corporate DNS. host_add
    --ip-address is refused there unless it says no_reverse (after host_del --updatedns already
    removed the A record): the client reads the zones first and says it."""
    fake = FakeIpa(tls, forward_only=True)
    fqdn = "rhvnode3.lab.example.com"
    fake.add_host(fqdn, ["hypervisors"])
    try:
        c = ipa_client(fake, tls, tmp_path)
        assert c.dns_plan(fqdn, ["192.0.2.13", "2001:db8::13"]) == {
            "forward": True, "reverse": {"192.0.2.13": False, "2001:db8::13": False}}
        with pytest.raises(IpaError, match="is not managed by this server .4001."):  # what the old call got
            c._call("host_add", a_fqdn="other.lab.example.com", o_random=True, o_ip_address="192.0.2.14")
        c.host_del(fqdn)
        otp = c.host_add(fqdn, "192.0.2.13", "2001:db8::13")
        assert otp == fake.hosts[fqdn]["_otp"]
        assert fake.dns[fqdn] == {"arecord": ["192.0.2.13"], "aaaarecord": ["2001:db8::13"]} and fake.ptr == {}
        add = next(o for m, _, o in fake.rpc if m == "host_add" and o.get("ip_address") == "192.0.2.13")
        aaaa = next(o for m, _, o in fake.rpc if m == "dnsrecord_add")
        assert add["no_reverse"] is True and aaaa["aaaa_extra_create_reverse"] is False
        assert fake.schema_violations == []
    finally:
        fake.close()


def test_the_fake_ipa_refuses_what_the_command_schema_lacks(ipa, tls, tmp_path):
    c = ipa_client(ipa, tls, tmp_path)
    with pytest.raises(IpaError, match="Unknown option: o_ip6_address .3005."):
        c._call("host_add", a_fqdn="x.lab.example.com", o_ip6_address="2001:db8::1")
    assert ipa.schema_violations == ["host_add: Unknown option: o_ip6_address"]


def test_ipa_errors_and_session_expiry(ipa, tls, tmp_path):
    c = ipa_client(ipa, tls, tmp_path)
    with pytest.raises(IpaError, match='host with name "rhvnode3.lab.example.com" already exists .4002.'):
        c.host_add("rhvnode3.lab.example.com", None)
    ipa.expire_sessions()
    assert c.host_info("rhvnode3.lab.example.com") is not None
    assert len([r for r in ipa.requests if r.path.endswith("login_password")]) == 2
    with pytest.raises(IpaError, match="login as admin refused"):
        ipa_client(ipa, tls, tmp_path, password="nope").host_info("x.lab.example.com")


def test_ipa_retries_503_and_bounds_a_hang(ipa, tls, tmp_path):
    c = ipa_client(ipa, tls, tmp_path)
    ipa.inject("503", "/ipa/session/json", times=2)
    assert c.host_info("rhvnode3.lab.example.com") is not None
    ipa.inject("hang", "/ipa/session/json", times=3, seconds=3)
    with pytest.raises(IpaError, match="cannot reach .*gave up after 3 attempts"):
        c.host_info("rhvnode3.lab.example.com")


# -- Satellite -----------------------------------------------------------------------------
@pytest.fixture
def sat(tls):
    fake = FakeForeman(tls)
    fake.add_host("rhvnode3.lab.example.com", hostgroup_id=7, hostgroup_title="hypervisors/rhvh",
                  lifecycle_environment_id=3, lifecycle_environment_name="Production",
                  content_view_id=11, content_view_name="RHVH-4.4")
    yield fake
    fake.close()


def sat_client(fake, tls, tmp_path, password="sat-secret", **kw) -> ForemanSatellite:
    cfg = SatelliteConfig(url=fake.url, password_file=secret(tmp_path, "s.pw", password), ca_file=tls.ca,
                          organization="Lab", location="Default Location", activation_keys=["rhvh-4.4"], **kw)
    return ForemanSatellite(cfg, **FAST)


def test_satellite_delete_and_global_registration(sat, tls, tmp_path):
    c = sat_client(sat, tls, tmp_path)
    assert c.delete_host("rhvnode3.lab.example.com") is True
    assert c.delete_host("rhvnode3.lab.example.com") is False  # idempotent
    cmd = c.registration_command("rhvnode3.lab.example.com")
    assert "activation_keys=rhvh-4.4&location_id=2&organization_id=1" in cmd and cmd.endswith("| bash")
    post = next(r for r in sat.requests if r.path == "/api/registration_commands")
    assert post.json() == {"registration_command": {"organization_id": 1, "activation_keys": ["rhvh-4.4"],
                                                    "insecure": False, "location_id": 2}}


def test_satellite_records_and_restores_the_hosts_placement(sat, tls, tmp_path):
    c = sat_client(sat, tls, tmp_path, insecure=True)
    fqdn = "rhvnode3.lab.example.com"
    placement = c.host_info(fqdn)
    assert placement == {"organization_id": 1, "organization": "Lab", "location_id": 2, "location": "Default Location",
                         "hostgroup_id": 7, "hostgroup": "hypervisors/rhvh", "lifecycle_environment_id": 3,
                         "lifecycle_environment": "Production", "content_view_id": 11, "content_view": "RHVH-4.4"}
    c.delete_host(fqdn)
    assert c.host_info(fqdn) is None and c.restore_content(fqdn, placement) is False  # not registered yet
    c.registration_command(fqdn, placement)
    assert sat.registrations[-1] == {"organization_id": 1, "activation_keys": ["rhvh-4.4"], "insecure": True,
                                     "location_id": 2, "hostgroup_id": 7, "lifecycle_environment_id": 3}
    sat.add_host(fqdn, lifecycle_environment_id=1, content_view_id=2)  # the activation key's defaults
    assert c.restore_content(fqdn, placement) is True
    assert c.host_info(fqdn)["content_view_id"] == 11 and c.host_info(fqdn)["lifecycle_environment_id"] == 3


def test_satellite_content_facet_in_katello_4_multi_cv_and_3_x_shapes(sat, tls, tmp_path):
    """Katello 4.x renders content_view/lifecycle_environment as objects and a list of
    content_view_environments (several with multi-CV); 3.x rendered flat *_id members."""
    from provision.integrations.foreman import content_placement

    c = sat_client(sat, tls, tmp_path)
    fqdn = "rhvnode3.lab.example.com"
    raw = c._api("GET", f"/api/hosts/{next(iter(sat.hosts))}")["content_facet_attributes"]
    assert "content_view_id" not in raw and raw["content_view"]["id"] == 11  # the 4.x shape, as rendered
    host = next(iter(sat.hosts.values()))
    host["_cves"] = [((11, "RHVH-4.4"), (3, "Production")), ((12, "Tools"), (3, "Production"))]
    placement = c.host_info(fqdn)
    assert placement["content_view_environments"] == ["Production/RHVH-4.4", "Production/Tools"]
    assert (placement["content_view_id"], placement["lifecycle_environment_id"]) == (11, 3)
    host["_cves"] = [((2, "Default"), (1, "Library"))]
    assert c.restore_content(fqdn, placement) is True
    assert host["_cves"] == [((None, "RHVH-4.4"), (None, "Production")), ((None, "Tools"), (None, "Production"))]
    assert content_placement({"content_view_id": 5, "content_view_name": "cv", "lifecycle_environment_id": 6,
                              "lifecycle_environment_name": "le"}) == {
        "content_view_id": 5, "content_view": "cv", "lifecycle_environment_id": 6, "lifecycle_environment": "le"}


def test_the_fake_satellite_refuses_undocumented_registration_parameters(sat, tls, tmp_path):
    c = sat_client(sat, tls, tmp_path)
    with pytest.raises(SatelliteError, match="Unknown parameter.s.: content_view_id"):
        c._api("POST", "/api/registration_commands",
               json={"registration_command": {"organization_id": 1, "activation_keys": ["k"], "content_view_id": 11}})


def test_satellite_rhsm_fallback_and_errors(sat, tls, tmp_path):
    cmd = sat_client(sat, tls, tmp_path, registration="rhsm").registration_command("x")
    assert cmd == (f"rpm -Uvh {sat.url}/pub/katello-ca-consumer-latest.noarch.rpm && "
                   "subscription-manager register --org=Lab --activationkey=rhvh-4.4")
    with pytest.raises(SatelliteError, match="HTTP 401: Unable to authenticate user admin"):
        sat_client(sat, tls, tmp_path, password="nope").delete_host("x")
    sat.inject("503", "/api/hosts", times=2)
    assert sat_client(sat, tls, tmp_path).delete_host("rhvnode3.lab.example.com") is True


# -- DNS -----------------------------------------------------------------------------------
@pytest.fixture
def dns():
    fake = FakeDns()
    fake.add("rhvnode3.lab.example.com", "A", "192.0.2.13")
    fake.add("13.2.0.192.in-addr.arpa", "PTR", "rhvnode3.lab.example.com.")
    fake.add("rhvnode4.lab.example.com", "A", "192.0.2.99")
    fake.add("14.2.0.192.in-addr.arpa", "PTR", "other.lab.example.com.")
    fake.add("rhvnode5.lab.example.com", "A", "192.0.2.15")
    fake.add("_ldap._tcp.lab.example.com", "SRV", "10 50 389 ipa2.lab.example.com.")
    fake.add("_ldap._tcp.lab.example.com", "SRV", "0 100 389 ipa1.lab.example.com.")
    yield DnsChecker(["127.0.0.1"], port=fake.port, timeout=2)
    fake.close()


def test_dns_matching_mismatching_and_missing_ptr(dns):
    assert dns.check("rhvnode3.lab.example.com", ["192.0.2.13"]) == []
    assert dns.check("rhvnode4.lab.example.com", ["192.0.2.14"]) == [
        "rhvnode4.lab.example.com resolves to 192.0.2.99; expected 192.0.2.14",
        "PTR of 192.0.2.14 is other.lab.example.com.; expected rhvnode4.lab.example.com."]
    assert dns.check("rhvnode5.lab.example.com", ["192.0.2.15"]) == ["192.0.2.15 has no PTR record"]
    assert dns.check("ghost.lab.example.com", ["192.0.2.16"])[0] == "ghost.lab.example.com has no A/AAAA record"


def test_ipa_servers_by_srv(dns):
    assert dns.ipa_servers("lab.example.com") == ["ipa1.lab.example.com", "ipa2.lab.example.com"]
    assert dns.ipa_servers("nowhere.example.com") == []
