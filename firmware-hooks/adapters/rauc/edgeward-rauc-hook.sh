#!/bin/sh
# RAUC: install hook of the bundle (`[hooks] filename=edgeward-rauc-hook.sh`, `hooks=install-check`
# in [update]) and slot post-install hook (`[image.rootfs] hooks=post-install`). RAUC passes the
# hook name as $1 and describes the slot in RAUC_SLOT_* (RAUC_SLOT_CLASS, RAUC_SLOT_MOUNT_POINT...)
# and the bundle in RAUC_BUNDLE_MOUNT_POINT. install-check answers 10 with a message on stderr to
# reject the bundle. Mark-good after boot goes through edgeward-rauc-mark-good.sh.
. "${EDGEWARD_HOOKS:-/usr/share/edgeward/hooks}/common.sh"
case "$1" in
  install-check)
    # shellcheck disable=SC2046
    edgeward_hook pre-install --manifest "${RAUC_BUNDLE_MOUNT_POINT}/edgeward-manifest.json" $(edgeward_key_flags)
    rc=$?
    [ "$rc" -eq 3 ] && { echo "edgeward: firmware manifest refused" >&2; exit 10; }
    exit "$rc"
    ;;
  slot-post-install)
    [ "$RAUC_SLOT_CLASS" = "rootfs" ] || exit 0
    # shellcheck disable=SC2046
    with_agent_stopped edgeward_hook post-install $(edgeward_key_flags)
    ;;
  *)
    exit 0
    ;;
esac
