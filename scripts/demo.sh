#!/usr/bin/env bash
# Command 1 of the README: the bridge's main job against the built-in simulator.
# Prepares .venv on first use, then runs `hoymiles-bridge demo` (extra args are passed on).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# System packages this command needs (installed with apt when missing and run as root).
export HOYMILES_APT_PACKAGES="${HOYMILES_APT_PACKAGES:-mosquitto mosquitto-clients}"
HOYMILES_EXTRAS="${HOYMILES_EXTRAS:-test,dev}"
# shellcheck source=scripts/bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
exec hoymiles-bridge demo "$@"
