"""`provision check NAME`: every preflight check against real peers and fakes; changes nothing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from provision.cli import main

from .conftest import start_server
from .fakes.dnsserver import FakeDns
from .fakes.foreman import FakeForeman
from .fakes.ipa import FakeIpa
from .fakes.ovirt import FakeOvirt
from .fakes.tls import make_tls
from .ipmisim import start_bmc
from .workflow_helpers import import_nodes, loopback_inventory, mgmt_ip, stub_media


@pytest.fixture
def world(tmp_path):
    tls = make_tls(tmp_path / "tls")
    ovirt, ipa, sat, dns = FakeOvirt(tls), FakeIpa(tls), FakeForeman(tls), FakeDns()
    bmc = start_bmc(tmp_path, "rhvnode3")
    ovirt.add_existing("rhvnode3", "ocpcluster")
    ipa.add_host("rhvnode3.lab.example.com", ["hypervisors"])
    dns.add("rhvnode3.lab.example.com", "A", mgmt_ip(0))
    dns.add("11.10.0.127.in-addr.arpa", "PTR", "rhvnode3.lab.example.com.")
    dns.add("rhvnode4.lab.example.com", "A", mgmt_ip(1))
    for name, value in (("engine", "engine-secret"), ("ipa", "ipa-secret"), ("sat", "sat-secret"), ("bmc", "password")):
        (tmp_path / f"{name}.pw").write_text(value + "\n")
    stub_media(tmp_path)
    gen = start_server(tmp_path, extra=f"""
[engine]
url = "{ovirt.url}/ovirt-engine"
password_file = "{tmp_path}/engine.pw"
ca_file = "{tls.ca}"
[ipa]
server = "{ipa.url.removeprefix('https://')}"
password_file = "{tmp_path}/ipa.pw"
ca_file = "{tls.ca}"
[satellite]
url = "{sat.url}"
password_file = "{tmp_path}/sat.pw"
ca_file = "{tls.ca}"
organization = "Lab"
activation_keys = ["rhvh-4.4"]
[dns]
nameservers = ["127.0.0.1"]
port = {dns.port}
[defaults]
ipmi_attempts = 1
""")
    server = next(gen)
    cfg, svc = server.config, server.svc
    import_nodes(svc.store, loopback_inventory({"rhvnode3": bmc.port, "rhvnode4": 9, "rhvnode5": 9},
                                               str(tmp_path / "bmc.pw")))
    yield cfg, ovirt, ipa, bmc
    for f in (ovirt, ipa, sat, dns):
        f.close()
    bmc.stop()
    gen.close()


def test_check_all_green(world):
    cfg, ovirt, ipa, bmc = world
    res = CliRunner().invoke(main, ["--config", str(cfg), "check", "rhvnode3", "--json"])
    rows = {r["check"]: r for r in json.loads(res.output)}
    assert res.exit_code == 0, res.output
    assert rows["dns"]["detail"] == "rhvnode3.lab.example.com <-> 127.0.10.11"
    assert rows["bmc"]["detail"].startswith(f"127.0.0.1:{bmc.port} answers: power ")
    assert rows["engine"]["detail"] == "host rhvnode3 is up; cluster ocpcluster exists"
    assert rows["ipa"]["detail"] == "host groups: hypervisors"
    assert rows["ipa dns"]["detail"] == "zone lab.example.com in IPA: 127.0.10.11 with its PTR"
    assert rows["media"]["detail"] == "media rhvh: 4 over TFTP and 4 over HTTP, fetched as the node will"
    assert rows["satellite"]["detail"].endswith("activation keys rhvh-4.4")
    assert {m for m, _, _ in ipa.rpc} == {"host_show", "dnszone_show", "dnszone_find"}  # nothing changed
    assert all(r.method == "GET" or r.path.endswith("/sso/oauth/token") for r in ovirt.requests)


def test_check_reports_each_failure_and_exits_1(world):
    cfg, *_ = world
    res = CliRunner().invoke(main, ["--config", str(cfg), "check", "rhvnode4"])
    assert res.exit_code == 1
    lines = {line.split()[0]: line for line in res.output.splitlines()[1:]}
    assert "FAIL" in lines["dns"] and "127.0.10.12 has no PTR record" in lines["dns"]
    assert "FAIL" in lines["engine"] and "does not know host rhvnode4" in lines["engine"]
    assert "FAIL" in lines["bmc"] and "127.0.0.1:9" in lines["bmc"]
    assert "ok" in lines["facts"]


def test_check_shows_media_that_is_not_served_before_a_rebuild_would_retire_the_host(world, tmp_path):
    """The trial: no installation media imported, no loaders in the TFTP root, and `check` said ok."""
    cfg, *_ = world
    for f in (tmp_path / "bootfiles").glob("*.efi"):
        f.unlink()
    (tmp_path / "media" / "rhvh" / "images" / "install.img").unlink()
    res = CliRunner().invoke(main, ["--config", str(cfg), "check", "rhvnode3", "--json"])
    assert res.exit_code == 1
    media = next(r for r in json.loads(res.output) if r["check"] == "media")
    assert media["result"] == "FAIL", media
    assert "shimx64.efi: " in media["detail"] and "grubx64.efi: " in media["detail"]
    assert "images/install.img: HTTP 404" in media["detail"] and "provision media import" in media["detail"]
