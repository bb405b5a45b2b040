#!/bin/sh
# edgeward OTA adapters: shared settings. Sourced by every adapter script.
# /etc/edgeward/hooks.env may set EDGEWARD (the command), EDGEWARD_CONFIG, EDGEWARD_FIRMWARE_KEYS
# (space-separated PEM files) and EDGEWARD_MANIFEST (where the update puts its signed manifest).
[ -r /etc/edgeward/hooks.env ] && . /etc/edgeward/hooks.env
EDGEWARD="${EDGEWARD:-/usr/bin/node /opt/edgeward/edgeward.mjs}"
EDGEWARD_CONFIG="${EDGEWARD_CONFIG:-/etc/edgeward/agent.yaml}"
EDGEWARD_FIRMWARE_KEYS="${EDGEWARD_FIRMWARE_KEYS:-/etc/edgeward/firmware-key.pem}"

edgeward_hook() {
  phase="$1"
  shift
  # shellcheck disable=SC2086 # EDGEWARD is a command line on purpose
  $EDGEWARD hook "$phase" --config "$EDGEWARD_CONFIG" "$@"
}

edgeward_key_flags() {
  for k in $EDGEWARD_FIRMWARE_KEYS; do printf ' --firmware-key %s' "$k"; done
}

# LevelDB admits one process: phases that touch the store run with the agent stopped.
with_agent_stopped() {
  systemctl stop edgeward.service 2>/dev/null
  "$@"
  rc=$?
  systemctl start edgeward.service 2>/dev/null
  return "$rc"
}
