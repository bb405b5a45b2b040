#!/bin/sh
# SWUpdate: after the reboot into the new image (a oneshot unit ordered Before=edgeward.service).
# Confirms the update (bootloader variable ustate=0 through fw_setenv) only when edgeward
# re-established the identity; otherwise rolls the identity back and reboots so the bootloader's
# bootcount falls back to the previous image. Exit 21 from post-boot (issuer not reachable yet)
# is retried (EDGEWARD_RETRY_TRIES x EDGEWARD_RETRY_INTERVAL s).
. "${EDGEWARD_HOOKS:-/usr/share/edgeward/hooks}/common.sh"
if post_boot_with_retries && edgeward_hook commit; then
  exec fw_setenv ustate 0
fi
edgeward_hook rollback
exec systemctl reboot
