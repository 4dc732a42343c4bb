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


# -- several nodes at once -----------------------------------------------------------------------
def test_check_several_nodes_in_parallel_ends_with_one_table(world):
    cfg, *_ = world
    res = CliRunner().invoke(main, ["--config", str(cfg), "check", "--cluster", "ocpcluster",
                                                    "--parallel", "3"])
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["NODE", "CHECK", "RESULT", "DETAIL"]
    assert any(line.split()[:3] == ["rhvnode3", "all", "ok"] for line in lines)  # one row for a node that passes
    four = [line for line in lines if line.startswith("rhvnode4 ")]
    assert {line.split()[1] for line in four} >= {"dns", "engine", "bmc"} and all("FAIL" in x for x in four)
    assert lines[-1] == "3 node(s): 1 pass, 2 fail (rhvnode4, rhvnode5)"
    # progress went to stderr, one line per node as it finished (no terminal here)
    progress = [line for line in res.stderr.splitlines() if line.startswith("checking ")]
    assert sorted(line.split()[-1] if "failed" not in line else line.split()[-2] for line in progress) == \
        ["rhvnode3", "rhvnode4", "rhvnode5"]
    assert {line.split()[1] for line in progress} == {"1/3:", "2/3:", "3/3:"}
    rows = json.loads(CliRunner().invoke(
        main, ["--config", str(cfg), "check", "rhvnode3", "rhvnode4", "--json"]).stdout)
    assert {r["node"] for r in rows} == {"rhvnode3", "rhvnode4"}
    assert all(r["result"] == "ok" for r in rows if r["node"] == "rhvnode3")


def test_check_refuses_names_and_cluster_together_and_unknown_names(world):
    cfg, *_ = world
    res = CliRunner().invoke(main, ["--config", str(cfg), "check", "rhvnode3", "--cluster", "ocpcluster"])
    assert res.exit_code == 2 and "give node names or --cluster, not both" in res.output
    res = CliRunner().invoke(main, ["--config", str(cfg), "check", "--cluster", "nosuch"])
    assert res.exit_code == 2 and "no nodes in cluster 'nosuch'" in res.output
    assert CliRunner().invoke(main, ["--config", str(cfg), "check", "rhvnode3", "nosuch"]).exit_code == 2


def test_an_unreachable_engine_is_one_line_naming_the_system_and_the_cause(world):
    cfg, ovirt, *_ = world
    url = ovirt.url
    ovirt.close()  # nothing listens there any more
    res = CliRunner().invoke(main, ["--config", str(cfg), "check", "rhvnode3", "--json"])
    assert res.exit_code == 1
    engine = next(r for r in json.loads(res.output) if r["check"] == "engine")
    assert engine["detail"].startswith(f"engine: {url}/ovirt-engine: connection refused")
    assert "Max retries" not in engine["detail"] and "HTTPSConnectionPool" not in engine["detail"]
    assert "\n" not in engine["detail"]
