"""Every script we render runs here under dash with stub tools that accept only the oldest
target's options (provision/render/target-tools.yaml): kickstart %post and %onerror and the first-boot
enrollment unit with EL8's tools. Each external command is made to fail in turn: the node must
report `failed` with its log, leave no secret on disk, and a rerun must do nothing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from provision import config as config_mod
from provision import services
from provision.domain import load_yaml, parse_nodes

from .conftest import EXAMPLE, write_config
from .stubtools import SPEC, check_args, make_stubs, tool_spec

VARIANTS = Path(__file__).parent / "data" / "variants.yaml"
OTP = "otp-Zq81-SECRET"
REGISTER = "subscription-manager register --org=Lab --activationkey=rhvh44\n"
CA = "-----BEGIN CERTIFICATE-----\nMIIBkatelloCA\n-----END CERTIFICATE-----"
ENROLL = {"status": "ok", "fqdn": "rhvnode3.lab.example.com", "ipa_otp": OTP, "ipa_server": "ipa1.lab.example.com",
          "satellite_ca": CA,
          "ipa_domain": "lab.example.com", "ipa_realm": "LAB.EXAMPLE.COM",
          "satellite_command": "set -o pipefail && curl -sS 'https://satellite.lab.example.com/register?"
                               "activation_keys=rhvh44' -H 'Authorization: Bearer jwt' | bash"}


def svc_for(tmp: Path, extra: str = ""):
    cfg = write_config(tmp, extra=extra)
    s = services.build(config_mod.load(cfg))
    for path in (EXAMPLE, VARIANTS):
        s.store.import_nodes(parse_nodes(load_yaml(path.read_text(), str(path))))
    return s


@pytest.fixture(scope="module")
def kickstarts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ks")
    s = svc_for(tmp, extra='\n[profiles.el]\nrelease_package = "https://repo.example.com/ovirt-release44.rpm"\n'
                           'repos = [{name = "ovirt-44", baseurl = "https://repo.example.com/ovirt-4.4/el8"}]\n')
    out = {n: s.renderer.render(n, "kickstart", install=True, show_secrets=True).text for n in ("rhvnode3", "kvm1")}
    s.close()
    return out


def section(ks: str, name: str) -> str:
    m = re.search(rf"^%{name}\b[^\n]*\n(.*?)^%end$", ks, re.S | re.M)
    assert m, f"no %{name} section"
    return m.group(1)


class Node:
    """A fake root for one node's scripts: absolute paths the scripts write are moved under it."""

    def __init__(self, tmp: Path, target: str = "el8") -> None:
        self.root = tmp / "root"
        for d in ("root", "usr/local/sbin", "etc/systemd/system", "tmp", "etc/sysconfig/network-scripts",
                  "etc/NetworkManager/system-connections", "etc/pki/ca-trust/source/anchors"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.stubs = make_stubs(tmp, target)

    def rebase(self, script: str) -> str:
        return re.sub(r"(?<![\w.:/-])/(root|usr|etc|tmp)/", f"{self.root}/\\1/", script)

    def run(self, script: str, fail: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(["dash"], input=self.rebase(script), env=self.stubs.env(fail=fail), capture_output=True,
                              text=True, timeout=120)

    def enroll_script(self) -> Path:
        return self.root / "usr/local/sbin/provision-enroll"

    def first_boot(self, fail: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(["dash", str(self.enroll_script())], env=self.stubs.env(fail=fail),
                              capture_output=True, text=True, timeout=120)

    def secrets_left(self) -> list[str]:
        return [str(p) for p in self.root.rglob("*") if p.is_file() and OTP in p.read_text(errors="replace")]

    def posts(self) -> list[tuple[str, str | None]]:
        """(callback phase, posted data) of every curl call, in order."""
        return [(next(a for a in c["args"] if a.startswith("http")).rsplit("/", 1)[-1], c.get("data"))
                for c in self.stubs.calls("curl") if "/callback/" in " ".join(c["args"])]


def installed_node(tmp: Path, ks: str) -> Node:
    node = Node(tmp)
    node.stubs.respond("installed", json.dumps(ENROLL))
    node.stubs.respond("register", REGISTER)
    (node.root / "etc/sysconfig/network-scripts/ifcfg-eno1").write_text('DEVICE=eno1\nONBOOT=yes\n')
    (node.root / "etc/NetworkManager/system-connections/bond0.10.nmconnection").write_text(
        "[connection]\nid=bond0.10\ninterface-name=bond0.10\n\n[ipv4]\nmethod=manual\n")
    res = node.run(section(ks, "post"))
    assert res.returncode == 0, res.stderr
    return node


# -- the option lists themselves -----------------------------------------------------------------
@pytest.mark.parametrize("tool,target,args,ok", [
    ("curl", "el8", ["-fsS", "--retry", "10", "--retry-all-errors", "-X", "POST", "http://x/"], False),
    ("curl", "el8", ["-fsS", "--retry", "10", "--retry-connrefused", "-X", "POST", "http://x/"], True),
    ("curl", "el7", ["-fsS", "--retry-connrefused", "http://x/"], False),
    ("ip", "el7", ["-j", "-d", "link", "show"], False),
    ("ip", "el7", ["-o", "-d", "link", "show"], True),
    ("ip", "el8", ["-j", "addr", "show"], True),
    ("lsblk", "el7", ["-J", "-b"], False),
    ("lsblk", "el7", ["-P", "-b", "-o", "NAME,KNAME,SERIAL"], False),
    ("lsblk", "el7", ["-P", "-b", "-o", "NAME,KNAME,WWN,TRAN"], True),
    ("lsblk", "el7", ["-P", "-o"], False),  # a value is missing
    ("curl", "el8", ["-fsSo", "/tmp/x", "http://x/"], True),  # a value after combined short flags
    ("curl", "el8", ["--output"], False),
    ("curl", "el8", ["--output=/tmp/x", "http://x/"], True),
])
def test_stub_option_lists(tool, target, args, ok):
    assert (check_args(tool_spec(tool, target), args) is None) == ok


# -- kickstart %post and %onerror on EL8 tools -----------------------------------------------------
@pytest.mark.parametrize("name", ["rhvnode3", "kvm1"])
def test_post_runs_on_el8_tools_and_leaves_the_first_boot_unit(kickstarts, tmp_path, name):
    node = installed_node(tmp_path, kickstarts[name])
    assert not [c for c in node.stubs.calls() if c.get("rejected")]
    assert [p for p, _ in node.posts()] == ["installed"]
    data = node.root / "root/.provision/enroll.json"
    assert json.loads(data.read_text())["ipa_otp"] == OTP and oct(data.stat().st_mode & 0o777) == "0o600"
    assert node.enroll_script().exists()
    assert ["enable", "provision-enroll.service"] in [c["args"] for c in node.stubs.calls("systemctl")]
    if name == "rhvnode3":
        assert [c["args"] for c in node.stubs.calls("nodectl")] == [["init"]]
        assert 'DOMAIN="lab.example.com"' in (node.root / "etc/sysconfig/network-scripts/ifcfg-eno1").read_text()
    else:
        assert [c["args"] for c in node.stubs.calls("dnf")] == [["-y", "install",
                                                                 "https://repo.example.com/ovirt-release44.rpm"]]
        keyfile = (node.root / "etc/NetworkManager/system-connections/bond0.10.nmconnection").read_text()
        assert "[ipv4]\ndns-search=lab.example.com;\n" in keyfile


def test_el_kickstart_installs_what_first_boot_needs_and_keeps_the_ovirt_repos(kickstarts):
    packages = section(kickstarts["kvm1"], "packages").split()
    assert {"ipa-client", "curl", "python3", "bash"} <= set(packages)
    assert "repo --name=ovirt-44 --baseurl=https://repo.example.com/ovirt-4.4/el8 --install" in kickstarts["kvm1"]


@pytest.mark.parametrize("name,tools", [
    ("rhvnode3", ["nodectl", "mkdir", "chmod", "curl", "cat", "systemctl"]),
    ("kvm1", ["dnf", "mkdir", "curl", "cat", "systemctl"]),
])
def test_post_failure_reports_failed_and_leaves_no_secret(kickstarts, tmp_path, name, tools):
    ks = kickstarts[name]
    for tool in tools:
        node = Node(tmp_path / tool)
        node.stubs.respond("installed", json.dumps(ENROLL))
        node.stubs.respond("failed", "{}")
        res = node.run(section(ks, "post"), fail=tool)
        assert res.returncode != 0, f"{tool}: %post went on after a failure"
        # anaconda runs %onerror after a failed %post --erroronfail
        (node.root / "tmp/anaconda.log").write_text("anaconda: post-install script failed\n")
        onerror = node.run(section(ks, "onerror"))
        assert onerror.returncode == 0, onerror.stderr
        phase, data = node.posts()[-1]
        assert phase == "failed" and "post-install script failed" in data, (tool, node.posts())
        assert node.secrets_left() == [], (tool, node.secrets_left())
        assert not [c for c in node.stubs.calls() if c.get("rejected")]


def test_post_retries_the_installed_callback_without_newer_curl_options(kickstarts, tmp_path):
    node = Node(tmp_path)
    node.stubs.respond("installed", json.dumps(ENROLL))
    res = node.run(section(kickstarts["rhvnode3"], "post"), fail="curl@1,curl@2")
    assert res.returncode == 0, res.stderr
    assert [p for p, _ in node.posts()] == ["installed"] * 3
    assert len(node.stubs.calls("sleep")) == 2


# -- the first-boot enrollment unit ---------------------------------------------------------------
def test_first_boot_enrolls_reports_and_then_does_nothing(kickstarts, tmp_path):
    node = installed_node(tmp_path, kickstarts["rhvnode3"])
    node.stubs.clear()
    node.stubs.respond("enrolled", "{}")
    res = node.first_boot()
    assert res.returncode == 0, res.stderr
    ipa = node.stubs.calls("ipa-client-install")
    assert len(ipa) == 1 and f"--password={OTP}" in ipa[0]["args"]
    assert "--hostname=rhvnode3.lab.example.com" in ipa[0]["args"]
    assert [c["args"] for c in node.stubs.calls("subscription-manager")] == [
        ["register", "--org=Lab", "--activationkey=rhvh44"]]
    anchor = node.root / "etc/pki/ca-trust/source/anchors/provision-satellite.pem"
    assert anchor.read_text() == CA + "\n"
    tools = [c["tool"] for c in node.stubs.calls()]
    assert tools.index("update-ca-trust") < tools.index("subscription-manager")  # trusted before registering
    assert [p for p, _ in node.posts()] == ["enrolled"]
    assert ["disable", "provision-enroll.service"] in [c["args"] for c in node.stubs.calls("systemctl")]
    assert node.secrets_left() == [] and not (node.root / "root/.provision/enroll.json").exists()
    assert not [c for c in node.stubs.calls() if c.get("rejected")]
    before = len(node.stubs.calls())
    assert node.first_boot().returncode == 0
    assert len(node.stubs.calls()) == before  # a rerun after success does nothing


@pytest.mark.parametrize("fail", ["python3", "ipa-client-install", "update-ca-trust", "curl@1", "bash",
                                  "subscription-manager", "systemctl", "chmod"])
def test_first_boot_step_failure_reports_failed_removes_the_secret_and_disables_itself(kickstarts, tmp_path, fail):
    node = installed_node(tmp_path, kickstarts["rhvnode3"])
    node.stubs.clear()
    node.stubs.respond("failed", "{}")
    node.stubs.respond("enrolled", "{}")
    res = node.first_boot(fail=fail)
    assert not [c for c in node.stubs.calls() if c.get("rejected")]
    posts = node.posts()
    if fail in ("systemctl", "chmod"):  # not an enrollment step: enrollment goes on, the problem is logged
        assert res.returncode == 0 and [p for p, _ in posts] == ["enrolled"]
        assert fail != "systemctl" or "could not disable the unit" in posts[-1][1]
    else:
        assert res.returncode != 0
        assert [p for p, _ in posts] == ["failed"], posts
        assert "failed (exit" in posts[-1][1] and OTP not in posts[-1][1]
        assert ["disable", "provision-enroll.service"] not in [c["args"] for c in node.stubs.calls("systemctl")]
        assert node.secrets_left() == [], node.secrets_left()
        # systemd runs it again: it asks `installed` for a fresh enrollment; until the node is retried
        # the server has none (409), and once it is, the node enrolls with the new one-time password
        node.stubs.clear()
        node.stubs.respond("installed", json.dumps({"error": "node is failed"}), status=409)
        assert node.first_boot().returncode != 0
        assert [p for p, _ in node.posts()] == ["installed"] and node.secrets_left() == []
        node.stubs.clear()
        node.stubs.respond("installed", json.dumps(ENROLL))
        assert node.first_boot().returncode == 0
        assert [p for p, _ in node.posts()] == ["installed", "enrolled"]
        assert ["disable", "provision-enroll.service"] in [c["args"] for c in node.stubs.calls("systemctl")]
    assert node.secrets_left() == [], node.secrets_left()
    before = len(node.stubs.calls())
    assert node.first_boot().returncode == 0
    assert len(node.stubs.calls()) == before  # a rerun after success is a no-op


def test_target_tools_file_cites_a_source_for_every_checked_tool():
    spec = yaml.safe_load(SPEC.read_text())
    for tool, entry in spec.items():
        for target in [t for t in ("el7", "el8") if t in entry] or [None]:
            e = entry[target] if target else entry
            assert e.get("passthrough") or (e.get("source") and e.get("version")), (tool, target)


def test_render_check_flags_tool_options_the_oldest_target_lacks(kickstarts):
    from provision.render.scripts import check_scripts

    assert check_scripts(kickstarts["rhvnode3"]) == [] and check_scripts(kickstarts["kvm1"]) == []
    old = kickstarts["rhvnode3"].replace("curl -fsS --connect-timeout 10", "curl -fsS --retry-all-errors")
    problems = check_scripts(old)
    assert problems and all("curl: unknown option --retry-all-errors (curl 7.61.1" in p for p in problems)
    assert "ip -j" not in old and check_scripts(old.replace("nodectl init", "nodectl init --bogus")) != problems
