#!/bin/sh
# chassis_control for ipmi_sim that drives a QEMU machine, as VirtualBMC does for libvirt: power
# on starts it (network first when the last boot device set is pxe), power off stops it by PID.
# The VM test writes start-vm beside this script. Every call goes to calls.log with a timestamp.
dir=${CHASSIS_DIR:-$(dirname "$0")}
echo "$(date +%s.%N) $*" >> "$dir/calls.log"
running() { [ -s "$dir/qemu.pid" ] && kill -0 "$(cat "$dir/qemu.pid")" 2>/dev/null; }
stop() { if running; then kill "$(cat "$dir/qemu.pid")"; while running; do sleep 0.1; done; fi; rm -f "$dir/qemu.pid"; }
while [ $# -gt 0 ] && [ "$1" != get ] && [ "$1" != set ]; do shift; done
op=$1
[ $# -gt 0 ] && shift
if [ "$op" = get ]; then
  for what in "$@"; do
    case $what in
      power) if running; then echo "power:1"; else echo "power:0"; fi;;
      boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)";;
    esac
  done
  exit 0
fi
while [ $# -gt 1 ]; do
  case $1 in
    power) if [ "$2" = 1 ]; then running || "$dir/start-vm" "$(cat "$dir/boot" 2>/dev/null || echo default)"
           else stop; fi;;
    reset) stop; "$dir/start-vm" "$(cat "$dir/boot" 2>/dev/null || echo default)";;
    boot) echo "$2" > "$dir/boot";;
  esac
  shift 2
done
exit 0
