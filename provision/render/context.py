"""The one template context. Building it reads nothing and writes nothing.

Context (every template gets exactly these keys; a missing one is an error):

  node      name, fqdn, hostname (short), cluster, profile
  facts     snapshot_id, firmware ('uefi'|'bios'), uefi (bool), nics, bonds, vlans, networks,
            dns_servers (list of str), dns_search (list of str)
  mgmt      network, device (kickstart --device: the bond name, else the NIC's MAC; a VLAN sits on it), ifname
            (the device the IP sits on), nics [{name, mac}], bond (None | {name, slaves, opts}),
            vlan (None | {id, parent, ifname}), ip, prefix, netmask, gateway (str|None),
            ip6, gateway6 (str|None), mtu (int|None)
  disk      install {id, path, wwn, serial, multipath}, kept [{id, path, size_gb, model, vgs}],
            warnings (list of str: render/checks.py, shown in the kickstart header)
  build     armed (bool), token (masked unless shown), ks_url, callback_url
  media     kernel (TFTP path), initrd (TFTP path), kernel_url, initrd_url (HTTP),
            grub_kernel, grub_initrd (GRUB's paths: TFTP, or (http,HOST:PORT)/... by [defaults] grub_fetch),
            stage2_url, repo_url, liveimg_url
  kernel_args   the whole installer command line after the kernel (inst.ks=... ip=... etc.)
  settings  timezone, lang, keyboard, root_password_hash (None -> root locked), ssh_key (None | str)
  profile   repos [{name, baseurl}], release_package (None | URL), packages (list): [profiles.el]
  server    public_url
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import __version__
from ..config import Config
from ..domain import Facts, Node
from .checks import foreign_vgs

MASK = "********"


@dataclass(frozen=True)
class Secrets:
    """What the renderer may need that is secret; masked in previews."""

    token: str | None = None
    root_password_hash: str | None = None


def build_context(node: Node, facts: Facts, snapshot_id: int | None, cfg: Config, *,
                  armed: bool, secrets: Secrets, ssh_key: str | None, show_secrets: bool = False,
                  liveimgs: dict[str, str] | None = None) -> dict:
    def hide(value: str | None) -> str | None:
        return value if value is None or show_secrets else MASK

    token = (secrets.token if armed and secrets.token else None)
    token = hide(token) if token else MASK
    base = cfg.server.public_url
    mgmt = _mgmt(facts)
    media = media_urls(node, cfg, liveimgs or {})
    ks_url = f"{base}/ks/{token}"
    kernel_args = " ".join(
        [f"inst.ks={ks_url}", "inst.ks.sendmac"]
        + ([f"inst.stage2={media['stage2_url']}"] if node.profile == "rhvh" else [f"inst.repo={media['repo_url']}"])
        + _dracut(node, facts, mgmt)
        + ([cfg.defaults.kernel_args] if cfg.defaults.kernel_args else [])
    )
    return {
        "provision_version": __version__,
        "node": {"name": node.name, "fqdn": node.fqdn, "hostname": node.short, "cluster": node.cluster,
                 "profile": node.profile},
        "facts": {
            "snapshot_id": snapshot_id, "firmware": facts.firmware, "uefi": facts.firmware == "uefi",
            "nics": [n.model_dump(mode="json") for n in facts.nics],
            "bonds": [dict(b.model_dump(mode="json"), opts=b.option_string()) for b in facts.bonds],
            "vlans": [dict(v.model_dump(mode="json"), ifname=v.ifname) for v in facts.vlans],
            "networks": [a.model_dump(mode="json") for a in facts.networks],
            "dns_servers": [str(a) for a in facts.dns_servers],
            "dns_search": list(facts.dns_search),
        },
        "mgmt": mgmt,
        "disk": {
            "install": {"id": facts.install_disk.id, "path": facts.install_disk.by_id,
                        "wwn": facts.install_disk.wwn, "serial": facts.install_disk.serial,
                        "multipath": facts.install_disk.multipath} if facts.install_disk else None,
            "kept": [{"id": d.id, "path": d.by_id, "size_gb": d.size_gb, "model": d.model, "vgs": list(d.vgs)}
                     for d in facts.kept_disks],
            "warnings": foreign_vgs(node, facts),
        },
        "build": {"armed": armed, "token": token, "ks_url": ks_url,
                  "callback_url": f"{base}/api/v1/callback/{token}"},
        "media": media,
        "kernel_args": kernel_args,
        "settings": {"timezone": cfg.defaults.timezone, "lang": cfg.defaults.lang,
                     "keyboard": cfg.defaults.keyboard,
                     "root_password_hash": hide(secrets.root_password_hash), "ssh_key": ssh_key},
        "profile": {"repos": [r.model_dump() for r in cfg.profiles.el.repos],
                    "release_package": cfg.profiles.el.release_package,
                    "packages": list(cfg.profiles.el.packages)},
        "server": {"public_url": base},
    }


def _mgmt(facts: Facts) -> dict:
    att = facts.management
    vlan = facts.vlan(att.interface)
    base = vlan.parent if vlan else att.interface
    bond = facts.bond(base)
    nics = [{"name": n.name, "mac": n.mac} for n in facts.management_nics()]
    mtu = (vlan.mtu if vlan else None) or (bond.mtu if bond else None) or (None if bond else getattr(facts.nic(base), "mtu", None))
    a4, a6 = att.address, att.address6
    return {
        "network": att.network,
        "device": bond.name if bond else nics[0]["mac"],
        "ifname": att.interface,
        "nics": nics,
        "bond": {"name": bond.name, "slaves": list(bond.slaves), "opts": bond.option_string()} if bond else None,
        "vlan": {"id": vlan.id, "parent": vlan.parent, "ifname": vlan.ifname} if vlan else None,
        "ip": str(a4.ip) if a4 else None,
        "prefix": a4.network.prefixlen if a4 else None,
        "netmask": str(a4.netmask) if a4 else None,
        "gateway": str(att.gateway) if att.gateway else None,
        "ip6": f"{a6.ip}/{a6.network.prefixlen}" if a6 else None,
        "gateway6": str(att.gateway6) if att.gateway6 else None,
        "mtu": mtu,
    }


def media_name(node: Node, cfg: Config) -> str:
    """The media a node boots: [defaults] rhvh_media or el_media, by its profile."""
    return cfg.defaults.rhvh_media if node.profile == "rhvh" else cfg.defaults.el_media


def media_urls(node: Node, cfg: Config, liveimgs: dict[str, str]) -> dict:
    """`liveimgs`: imported media's live images by media name (`provision media import` reads them
    from the ISO's kickstart); media put in place by hand use [defaults] rhvh_liveimg."""
    d = cfg.defaults
    name = media_name(node, cfg)
    url = f"{cfg.media_url}/{name}"
    return {
        "kernel": f"/media/{name}/images/pxeboot/vmlinuz",
        "initrd": f"/media/{name}/images/pxeboot/initrd.img",
        "grub_kernel": f"{cfg.grub_media_root}/media/{name}/images/pxeboot/vmlinuz",
        "grub_initrd": f"{cfg.grub_media_root}/media/{name}/images/pxeboot/initrd.img",
        "kernel_url": f"{url}/images/pxeboot/vmlinuz",
        "initrd_url": f"{url}/images/pxeboot/initrd.img",
        "stage2_url": url,
        "repo_url": url,
        "liveimg_url": f"{url}/{liveimgs.get(name, d.rhvh_liveimg)}",
    }


def _dracut(node: Node, facts: Facts, mgmt: dict) -> list[str]:
    """dracut.cmdline(7) options that bring up the management network in the installer. Every NIC
    the host uses (management, bonds, VLAN bases, networks) is pinned to its old name by MAC
    (`ifname=`; anaconda carries these to the installed system), so names survive the reinstall."""
    pinned = {n["name"]: n["mac"] for n in mgmt["nics"]} | {n.name: n.mac for n in facts.in_use()}
    args = [f"ifname={name}:{mac}" for name, mac in pinned.items()]
    if mgmt["bond"]:
        b = mgmt["bond"]
        args.append(f"bond={b['name']}:{','.join(b['slaves'])}:{b['opts']}")
    if mgmt["vlan"]:
        args.append(f"vlan={mgmt['vlan']['ifname']}:{mgmt['vlan']['parent']}")
    mtu = f":{mgmt['mtu']}" if mgmt["mtu"] else ""
    if mgmt["ip"]:
        args.append(f"ip={mgmt['ip']}::{mgmt['gateway'] or ''}:{mgmt['netmask']}:{node.fqdn}:{mgmt['ifname']}:none{mtu}")
    if mgmt["ip6"]:
        gw6 = f"[{mgmt['gateway6']}]" if mgmt["gateway6"] else ""
        ip6, prefix6 = mgmt["ip6"].split("/")
        args.append(f"ip=[{ip6}]::{gw6}:{prefix6}:{node.fqdn}:{mgmt['ifname']}:none{mtu}")
    args += [f"nameserver={s}" for s in facts.dns_servers]
    return args + ["rd.neednet=1"]
