#!/bin/sh
# RAUC: run once after boot (a oneshot unit, Before=edgeward.service). Marks the booted slot good
# only when edgeward re-established the gateway identity; otherwise rolls the identity back, marks
# the slot bad and reboots so the bootloader falls back to the other slot. While the issuer is not
# reachable (exit 21) post-boot is retried (EDGEWARD_RETRY_TRIES x EDGEWARD_RETRY_INTERVAL s).
. "${EDGEWARD_HOOKS:-/usr/share/edgeward/hooks}/common.sh"
post_boot_with_retries
rc=$?
if [ "$rc" -eq 0 ] && edgeward_hook commit; then
  exec rauc status mark-good booted
fi
edgeward_hook rollback
rauc status mark-bad booted
exec systemctl reboot
