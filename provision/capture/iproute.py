"""The collector's network sources on hosts without `ip -j` (EL7: iproute 4.11), turned into the
shapes `ip -j` prints, so one parser serves EL7, EL8 and EL9:

  ip-link-oneline   `ip -o -d link show`     -> [{ifname, link_type, address, mtu, master, link, linkinfo}]
  ip-addr-oneline   `ip -o addr show`        -> [{ifname, addr_info: [{family, local, prefixlen, scope}]}]
  route4-text/6     `ip -4|-6 route show default` -> [{dst, gateway, dev}]
  sysfs-net         one line per /sys/class/net entry (name type= address= mtu= master= kind= perm=),
                    with vlan-config (/proc/net/vlan/config): the last resort when `ip` gave nothing.

Formats: ip(8) of iproute2 4.11 (`-o` joins a device's lines with a backslash; `-d` adds the
link kind and its slave data as further segments), proc(5) for /proc/net/vlan/config."""

from __future__ import annotations

import re

KINDS = {"bond", "bridge", "vlan", "tun", "tap", "veth", "dummy", "ifb", "macvtap", "macvlan", "openvswitch",
         "vxlan", "geneve", "ipip", "gre", "team"}
_HEAD = re.compile(r"^\d+:\s+(?P<name>[^:@\s]+)(?:@(?P<link>[^:\s]+))?:\s+<(?P<flags>[^>]*)>\s+(?P<rest>.*)$")


def _word_after(words: list[str], key: str) -> str | None:
    try:
        return words[words.index(key) + 1]
    except (ValueError, IndexError):
        return None


def links_oneline(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        segments = [s.strip() for s in line.split("\\")]
        m = _HEAD.match(segments[0]) if segments else None
        if not m:
            continue
        words = m.group("rest").split()
        link: dict = {"ifname": m.group("name"), "mtu": int(_word_after(words, "mtu") or 1500)}
        if _word_after(words, "master"):
            link["master"] = _word_after(words, "master")
        if m.group("link") and m.group("link") != "NONE":
            link["link"] = m.group("link")
        info: dict = {}
        for seg in segments[1:]:
            w = seg.split()
            if not w:
                continue
            if w[0].startswith("link/"):
                link["link_type"] = w[0].removeprefix("link/")
                if len(w) > 1:
                    link["address"] = w[1].lower()
            elif w[0] in KINDS and "info_kind" not in info:
                info["info_kind"] = w[0]
                if w[0] == "vlan" and (vid := _word_after(w, "id")):
                    info["info_data"] = {"id": int(vid), "protocol": _word_after(w, "protocol")}
                elif w[0] == "bond":
                    info["info_data"] = {"mode": _word_after(w, "mode")}
            elif w[0].endswith("_slave"):
                info["info_slave_kind"] = w[0].removesuffix("_slave")
                if perm := _word_after(w, "perm_hwaddr"):
                    info["info_slave_data"] = {"perm_hwaddr": perm.lower()}
        if info:
            link["linkinfo"] = info
        out.append(link)
    return out


def addrs_oneline(text: str) -> list[dict]:
    by_name: dict[str, dict] = {}
    for line in text.splitlines():
        words = line.split("\\")[0].split()
        if len(words) < 4 or words[2] not in ("inet", "inet6") or "/" not in words[3]:
            continue
        name = words[1].split("@")[0]
        local, prefix = words[3].split("/", 1)
        by_name.setdefault(name, {"ifname": name, "addr_info": []})["addr_info"].append(
            {"family": words[2], "local": local, "prefixlen": int(prefix), "scope": _word_after(words, "scope")})
    return list(by_name.values())


def routes_text(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == "default":
            out.append({"dst": "default", "gateway": _word_after(words, "via"), "dev": _word_after(words, "dev")})
    return out


def links_sysfs(text: str, vlan_config: str) -> list[dict]:
    """Links from /sys/class/net (kind: bond/bridge directories; VLANs from /proc/net/vlan/config)."""
    vlans = {}
    for line in vlan_config.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            vlans[parts[0]] = (int(parts[1]), parts[2])
    out = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        kv = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        name = words[0]
        link: dict = {"ifname": name, "link_type": "ether" if kv.get("type") == "1" else "loopback"
                      if kv.get("type") == "772" else f"type{kv.get('type')}",
                      "address": kv.get("address", "").lower(), "mtu": int(kv.get("mtu") or 1500)}
        if kv.get("master"):
            link["master"] = kv["master"]
        info: dict = {}
        if name in vlans:
            info = {"info_kind": "vlan", "info_data": {"id": vlans[name][0]}}
            link["link"] = vlans[name][1]
        elif kv.get("kind"):
            info = {"info_kind": kv["kind"]}
        if kv.get("perm"):
            info["info_slave_data"] = {"perm_hwaddr": kv["perm"].lower()}
        if info:
            link["linkinfo"] = info
        out.append(link)
    return out
