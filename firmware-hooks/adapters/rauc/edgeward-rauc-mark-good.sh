#!/bin/sh
# RAUC: run once after boot (edgeward-rauc-mark-good.service, Before=edgeward.service). Marks the
# booted slot good only when edgeward re-established the gateway identity; otherwise marks it bad
# and reboots so the bootloader falls back to the other slot. Exit 21 = post-boot still running:
# try again after a pause.
. /usr/share/edgeward/hooks/common.sh
tries=0
while :; do
  # shellcheck disable=SC2046
  edgeward_hook post-boot $(edgeward_key_flags)
  rc=$?
  [ "$rc" -eq 21 ] && [ "$tries" -lt 10 ] && { tries=$((tries + 1)); sleep 30; continue; }
  break
done
if [ "$rc" -eq 0 ] && edgeward_hook commit; then
  exec rauc status mark-good booted
fi
edgeward_hook rollback
rauc status mark-bad booted
exec systemctl reboot
