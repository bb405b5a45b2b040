#!/bin/sh
# SWUpdate: after the reboot into the new image (a oneshot unit ordered Before=edgeward.service).
# Confirms the update (bootloader variable ustate=0 through fw_setenv) only when edgeward
# re-established the identity; otherwise rolls the identity back and lets the bootloader's
# bootcount fall back to the previous image.
. /usr/share/edgeward/hooks/common.sh
# shellcheck disable=SC2046
if edgeward_hook post-boot $(edgeward_key_flags) && edgeward_hook commit; then
  exec fw_setenv ustate 0
fi
edgeward_hook rollback
exec systemctl reboot
