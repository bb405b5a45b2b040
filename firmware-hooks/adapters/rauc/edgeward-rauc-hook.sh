#!/bin/sh
# RAUC: install hook of the bundle (`[hooks] filename=edgeward-rauc-hook.sh`, `hooks=install-check`
# in [update]) and slot post-install hook (`[image.rootfs] hooks=post-install`).
# Mark-good after boot goes through edgeward-rauc-mark-good.sh. RAUC passes the phase as $1.
. /usr/share/edgeward/hooks/common.sh
case "$1" in
  install-check)
    # shellcheck disable=SC2046
    edgeward_hook pre-install --manifest "${RAUC_BUNDLE_MOUNT_POINT}/edgeward-manifest.json" $(edgeward_key_flags)
    ;;
  slot-post-install)
    [ "$RAUC_SLOT_CLASS" = "rootfs" ] || exit 0
    # shellcheck disable=SC2046
    edgeward_hook post-install $(edgeward_key_flags)
    ;;
  *)
    exit 0
    ;;
esac
