"""Rendering: golden files for every example node and kind, pykickstart (RHEL8 + RHEL9) on every
kickstart, only the install disk in destructive lines, secrets masked, strict templates."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL9, makeVersion

from provision import config as config_mod
from provision import services
from provision.cli import main
from provision.domain import load_yaml, parse_nodes
from provision.errors import ProvisionError
from provision.render import KINDS, MASK, check_kickstart

from .conftest import EXAMPLE, REPO, write_config

GOLDEN = Path(__file__).parent / "golden"
VARIANTS = Path(__file__).parent / "data" / "variants.yaml"
NODES = ["rhvnode3", "rhvnode4", "rhvnode5", "kvm1"]
ROOT_HASH = "$6$provisiontest$5Qe0FvEw7KkWYh2yFNnSWmX0/HGgPKYbyXJcGqI6rTPvp2jNqpXo0Kpw3jAP8JbW9VdJ9dXHaXPiWnsaQ9BHb/"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO7C8n8l7lW3dFq2c2y5hYk0m9xS9qTf2Jw7n2y0b1cD ovirt-engine"


@pytest.fixture(scope="module")
def rsvc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("render")
    (tmp / "root.hash").write_text(ROOT_HASH + "\n")
    (tmp / "engine.pub").write_text(SSH_KEY + "\n")
    cfg = write_config(tmp, extra=f'\n[defaults]\nroot_password_hash_file = "{tmp}/root.hash"\n'
                                  f'ssh_key_file = "{tmp}/engine.pub"\n')
    svc = services.build(config_mod.load(cfg))
    for path in (EXAMPLE, VARIANTS):
        svc.store.import_nodes(parse_nodes(load_yaml(path.read_text(), str(path))))
    yield svc
    svc.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NODES)
def test_golden(rsvc, name, kind):
    text = rsvc.renderer.render(name, kind, install=True).text
    golden = GOLDEN / f"{name}.{kind}"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("name", NODES)
def test_every_kickstart_valid_for_rhel8_and_rhel9(rsvc, name):
    text = rsvc.renderer.render(name, "kickstart", install=True, show_secrets=True).text
    assert check_kickstart(text) == []


@pytest.mark.parametrize("name", NODES)
def test_only_install_disk_named_in_destructive_commands(rsvc, name):
    facts = rsvc.store.snapshot(name).facts
    text = rsvc.renderer.render(name, "kickstart", install=True).text
    handler = makeVersion(RHEL9)
    KickstartParser(handler).readKickstartFromString(text)
    install = facts.install_disk.by_id
    assert handler.ignoredisk.onlyuse == [install]
    assert handler.clearpart.drives == [install]
    assert all(p.disk in ("", install) for p in handler.partition.partitions)
    for kept in facts.kept_disks:
        assert kept.id not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert handler.autopart.autopart != handler.reqpart.reqpart  # one or the other, never both


def test_preview_masks_secrets_and_show_secrets_reveals(rsvc):
    _, token = rsvc.store.arm("rhvnode4", rsvc.key, 3600)
    try:
        masked = rsvc.renderer.render("rhvnode4", "kickstart").text
        assert token not in masked and ROOT_HASH not in masked
        assert f"/api/v1/callback/{MASK}/installed" in masked and f"rootpw --iscrypted {MASK}" in masked
        shown = rsvc.renderer.render("rhvnode4", "kickstart", show_secrets=True).text
        assert f"/api/v1/callback/{token}/installed" in shown and ROOT_HASH in shown
        grub = rsvc.renderer.render("rhvnode4", "grub", show_secrets=True).text
        assert f"inst.ks=http://127.0.0.1:8080/ks/{token} inst.ks.sendmac" in grub
    finally:
        rsvc.store.end_build("rhvnode4", "test")
    assert "set default=local" in rsvc.renderer.render("rhvnode4", "grub").text


def test_bond_vlan_management_network(rsvc):
    grub = rsvc.renderer.render("kvm1", "pxelinux", install=True).text
    assert "bond=bond0:enp1s0f0,enp1s0f1:mode=802.3ad,miimon=100" in grub  # lacp_rate=slow is the default
    assert "vlan=bond0.10:bond0" in grub
    assert "ip=10.10.10.21::10.10.10.1:255.255.255.0:kvm1.lab.example.com:bond0.10:none" in grub
    assert "ip=[2001:db8:10::21]::[2001:db8:10::1]:64:kvm1.lab.example.com:bond0.10:none" in grub
    assert "ifname=enp1s0f0:52:54:00:aa:00:01 ifname=enp1s0f1:52:54:00:aa:00:02" in grub
    ks = rsvc.renderer.render("kvm1", "kickstart", install=True).text
    handler = makeVersion(RHEL9)
    KickstartParser(handler).readKickstartFromString(ks)
    net = handler.network.network[0]
    assert (net.device, net.bondslaves, net.vlanid, net.interfacename) == ("bond0", "enp1s0f0,enp1s0f1", "10", "bond0.10")
    assert (net.ip, net.ipv6, net.gateway) == ("10.10.10.21", "2001:db8:10::21/64", "10.10.10.1")


def test_local_boot_when_not_armed(rsvc):
    assert "LOCALBOOT 0" in rsvc.renderer.render("kvm1", "pxelinux").text
    assert "install" not in rsvc.renderer.render("kvm1", "pxelinux").text.split("DEFAULT")[1].split("\n")[0]
    assert rsvc.renderer.render("rhvnode3", "ipxe").text.strip().endswith("exit")


def test_grub_fetches_kernel_and_initrd_over_tftp_or_http(rsvc, tmp_path):
    """[defaults] grub_fetch: "tftp" (the default) names GRUB's own TFTP server; "http" names
    public_url as GRUB's (http,HOST:PORT) device (the VM test boots this); an https URL is refused."""
    tftp = rsvc.renderer.render("rhvnode3", "grub", install=True).text
    assert "  linux /media/rhvh/images/pxeboot/vmlinuz " in tftp and "  initrd /media/rhvh/images/pxeboot/initrd.img" in tftp
    cfg = write_config(tmp_path, extra='[defaults]\ngrub_fetch = "http"\n')
    svc = services.build(config_mod.load(cfg))
    try:
        svc.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), str(EXAMPLE))))
        http = svc.renderer.render("rhvnode3", "grub", install=True).text
    finally:
        svc.close()
    assert "  linux (http,127.0.0.1:8080)/media/rhvh/images/pxeboot/vmlinuz inst.ks=http://127.0.0.1:8080/ks/" in http
    assert "  initrd (http,127.0.0.1:8080)/media/rhvh/images/pxeboot/initrd.img" in http
    assert config_mod.Config.model_validate({"defaults": {"grub_fetch": "http"},
                                             "server": {"public_url": "http://prov.example.com/"}}
                                            ).grub_media_root == "(http,prov.example.com)"
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\npublic_url = "https://prov.example.com"\n[defaults]\ngrub_fetch = "http"\n')
    with pytest.raises(ProvisionError, match=r"grub_fetch = \"http\" needs a server.public_url starting with http://"):
        config_mod.load(bad)


def _templates_copy(tmp_path: Path) -> Path:
    root = tmp_path / "tpl"
    shutil.copytree(REPO / "kickstarts", root / "kickstarts")
    shutil.copytree(REPO / "bootfiles", root / "bootfiles")
    return root


def test_check_fails_with_pykickstart_message_and_line(tmp_path):
    root = _templates_copy(tmp_path)
    ks = root / "kickstarts" / "rhvh.ks.j2"
    ks.write_text(ks.read_text().replace("autopart --type=thinp", "autopart --type=thinp\nreqpart --add-boot"))
    cfg = write_config(tmp_path, extra='\n')
    cfg.write_text(cfg.read_text().replace(f'templates = "{REPO}"', f'templates = "{root}"'))
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(cfg), "node", "import", str(EXAMPLE)]).exit_code == 0
    res = runner.invoke(main, ["--config", str(cfg), "render", "rhvnode3", "--kind", "kickstart", "--check"])
    assert res.exit_code == 1
    assert "RHEL8" in res.output and "RHEL9" in res.output
    assert "line" in res.output and "reqpart" in res.output.lower()


def test_cli_check_passes_on_examples(cfg_path):
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(cfg_path), "node", "import", str(EXAMPLE)]).exit_code == 0
    res = runner.invoke(main, ["--config", str(cfg_path), "render", "rhvnode5", "--kind", "kickstart", "--check"])
    assert res.exit_code == 0, res.output
    assert "kickstart valid for RHEL8 and RHEL9" in res.output
    assert runner.invoke(main, ["--config", str(cfg_path), "render", "ghost", "--kind", "grub"]).exit_code == 2


@pytest.mark.parametrize("template,error", [
    ("#!ipxe\nkernel {{ media.no_such_key }}\n", "UndefinedError.*no_such_key"),  # missing key: an error, not ""
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}\n", "SecurityError"),  # the sandbox holds
])
def test_templates_are_strict_and_sandboxed(tmp_path, template, error):
    root = _templates_copy(tmp_path)
    (root / "bootfiles" / "ipxe.j2").write_text(template)
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(f'templates = "{REPO}"', f'templates = "{root}"'))
    svc = services.build(config_mod.load(cfg))
    svc.store.import_nodes(parse_nodes(load_yaml(EXAMPLE.read_text(), "x")))
    with pytest.raises(ProvisionError, match=error):
        svc.renderer.render("rhvnode3", "ipxe")
    svc.close()


@pytest.mark.parametrize("name", NODES)
def test_every_nic_in_use_is_pinned_by_mac(rsvc, name):
    facts = rsvc.store.snapshot(name).facts
    text = rsvc.renderer.render(name, "grub", install=True).text
    for nic in facts.in_use():
        assert f"ifname={nic.name}:{nic.mac}" in text
