#!/bin/sh
# Stands in for Anaconda in the VM test's initramfs (dracut hook initqueue/settled). dracut has
# brought the network up from provision's kernel command line (ip=, ifname=, nameserver=, and
# bond=/vlan= when management is on one); once the management address is up: fetch inst.ks= as
# Anaconda does (an X-RHN-Provisioning-MAC-N header per NIC, as inst.ks.sendmac asks), hand the
# kickstart and the live interfaces to the test's sink, call back `installed` (and `enrolled` with
# provision.enroll=1), power off.
[ -e /tmp/provision-done ] && return 0
type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh
ip -o -4 addr show | grep -q "inet $(getarg provision.ip=)/" || return 0
ks=$(getarg inst.ks=)
sink=$(getarg provision.sink=)
set --
i=0
for dev in /sys/class/net/*; do
  [ -e "$dev/device" ] || continue
  mac=$(cat "$dev/bonding_slave/perm_hwaddr" 2>/dev/null || cat "$dev/address")
  set -- "$@" -H "X-RHN-Provisioning-MAC-$i: ${dev##*/} $mac"
  i=$((i + 1))
done
# the address can be up a moment before its route: not fetched yet, so the next round of the
# initqueue tries again (as Anaconda retries its kickstart fetch)
curl -sS --connect-timeout 5 -o /tmp/ks.cfg "$@" "$ks" > /tmp/curl.log 2>&1 || return 0
: > /tmp/provision-done
{ ip -o addr show; echo ---; ip -d -o link show; } > /tmp/live
curl -sS --data-binary @/tmp/ks.cfg "$sink/ks" > /dev/null 2>&1
curl -sS --data-binary @/tmp/live "$sink/live" > /dev/null 2>&1
cb=$(sed -n 's#.*\(http://[^ "]*/api/v1/callback/[^/ "]*\)/installed.*#\1#p' /tmp/ks.cfg | head -n 1)
curl -sS --data-binary "provision VM test: the installer stand-in" "$cb/installed" > /tmp/cb.out 2>&1
curl -sS --data-binary @/tmp/cb.out "$sink/callback" > /dev/null 2>&1
# provision.enroll=1 (a whole rebuild): what the installed system's first boot reports once it has
# joined IPA and Satellite
if [ -n "$(getarg provision.enroll=)" ]; then
  curl -sS --data-binary "provision VM test: enrolled" "$cb/enrolled" > /tmp/cb2.out 2>&1
  curl -sS --data-binary @/tmp/cb2.out "$sink/enrolled" > /dev/null 2>&1
fi
echo o > /proc/sysrq-trigger
