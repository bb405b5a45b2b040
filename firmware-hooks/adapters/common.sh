#!/bin/sh
# edgeward OTA adapters: shared settings. Sourced by every adapter script (installed as
# /usr/share/edgeward/hooks/, or wherever EDGEWARD_HOOKS points).
# /etc/edgeward/hooks.env (or EDGEWARD_HOOKS_ENV) may set EDGEWARD (the command), EDGEWARD_CONFIG,
# EDGEWARD_FIRMWARE_KEYS (space-separated PEM files), EDGEWARD_MANIFEST (where the update puts its
# signed manifest), EDGEWARD_RETRY_TRIES and EDGEWARD_RETRY_INTERVAL (post-boot retries, RAUC and
# SWUpdate; Mender retries by itself on exit 21).
hooks_env="${EDGEWARD_HOOKS_ENV:-/etc/edgeward/hooks.env}"
# shellcheck disable=SC1090
[ -r "$hooks_env" ] && . "$hooks_env"
if [ -z "${EDGEWARD:-}" ]; then
  if command -v edgeward >/dev/null 2>&1; then EDGEWARD=edgeward
  else EDGEWARD="/usr/bin/node /opt/edgeward/edgeward.mjs"; fi
fi
EDGEWARD_CONFIG="${EDGEWARD_CONFIG:-/etc/edgeward/agent.yaml}"
EDGEWARD_FIRMWARE_KEYS="${EDGEWARD_FIRMWARE_KEYS:-/etc/edgeward/firmware-key.pem}"
EDGEWARD_RETRY_TRIES="${EDGEWARD_RETRY_TRIES:-20}"
EDGEWARD_RETRY_INTERVAL="${EDGEWARD_RETRY_INTERVAL:-30}"

edgeward_hook() {
  phase="$1"
  shift
  # shellcheck disable=SC2086 # EDGEWARD is a command line on purpose
  $EDGEWARD hook "$phase" --config "$EDGEWARD_CONFIG" "$@"
}

edgeward_key_flags() {
  for k in $EDGEWARD_FIRMWARE_KEYS; do printf ' --firmware-key %s' "$k"; done
}

# The hooks never share the store with a running agent (LevelDB admits one process): phases that
# touch it run with edgeward.service stopped. Starting it again is harmless while an update waits
# for post-boot: the unit's ExecCondition (`hook agent-gate`, systemd/ota-gate.conf) keeps it down.
with_agent_stopped() {
  systemctl stop edgeward.service 2>/dev/null
  "$@"
  rc=$?
  systemctl start edgeward.service 2>/dev/null
  return "$rc"
}

# post-boot, called again while it answers 21 (issuer not reachable yet), at most
# EDGEWARD_RETRY_TRIES times, EDGEWARD_RETRY_INTERVAL seconds apart. Returns its last exit code.
post_boot_with_retries() {
  tries=0
  while :; do
    # shellcheck disable=SC2046
    edgeward_hook post-boot $(edgeward_key_flags)
    rc=$?
    [ "$rc" -eq 21 ] && [ "$tries" -lt "$EDGEWARD_RETRY_TRIES" ] || return "$rc"
    tries=$((tries + 1))
    sleep "$EDGEWARD_RETRY_INTERVAL"
  done
}
