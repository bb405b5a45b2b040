#!/bin/sh
# SWUpdate: shellscript handler of sw-description (`scripts: ({ filename = "edgeward-swupdate.sh";
# type = "shellscript"; })`). SWUpdate calls it with `preinst`, `postinst` and, on failure,
# `postfailure` as $1. The commit gate after reboot is edgeward-swupdate-boot.sh.
. "${EDGEWARD_HOOKS:-/usr/share/edgeward/hooks}/common.sh"
case "$1" in
  preinst)
    # shellcheck disable=SC2046
    edgeward_hook pre-install --manifest "${EDGEWARD_MANIFEST:-${TMPDIR:-/tmp}/edgeward-manifest.json}" $(edgeward_key_flags)
    ;;
  postinst)
    # shellcheck disable=SC2046
    with_agent_stopped edgeward_hook post-install $(edgeward_key_flags)
    ;;
  postfailure)
    with_agent_stopped edgeward_hook rollback
    ;;
  *)
    exit 0
    ;;
esac
