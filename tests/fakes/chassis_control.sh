#!/bin/sh
# chassis_control program for OpenIPMI's ipmi_sim (see ../../shared/notes/peers.md):
#   PROG [device] get power|boot ...   -> one "name:value" line each
#   PROG [device] set power 1|0 | reset 1 | boot pxe|default|...
# Every call is appended with a timestamp to calls.log beside the state files: tests assert on it.
dir=${CHASSIS_DIR:-$(dirname "$0")}
echo "$(date +%s.%N) $*" >> "$dir/calls.log"
while [ $# -gt 0 ] && [ "$1" != get ] && [ "$1" != set ]; do shift; done
op=$1
[ $# -gt 0 ] && shift
if [ "$op" = get ]; then
  for what in "$@"; do
    case $what in
      power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)";;
      boot) if [ -e "$dir/forget_boot" ]; then echo "boot:default"  # a BMC that drops the override
            else echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)"; fi;;
    esac
  done
elif [ "$op" = set ]; then
  while [ $# -gt 1 ]; do
    case $1 in
      power) echo "$2" > "$dir/power";;
      boot) echo "$2" > "$dir/boot";;
    esac
    shift 2
  done
fi
exit 0
