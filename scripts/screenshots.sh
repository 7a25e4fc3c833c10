#!/usr/bin/env bash
# Refresh docs/screenshots/: run the browser tests that photograph each page,
# in light and dark, with the documentation copies switched on.
# Usage: scripts/screenshots.sh [extra pytest arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HOYMILES_APT_PACKAGES="${HOYMILES_APT_PACKAGES:-mosquitto chromium}"
# shellcheck source=scripts/bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
HOYMILES_DOCS_SCREENSHOTS=1 exec python -m pytest -q -p no:cacheprovider -k "not smoke" \
  tests/test_web_ui.py tests/test_web_config.py tests/test_web_console.py tests/test_web_charts.py \
  tests/test_setup_mode.py tests/test_cloud_web_ui.py tests/test_controller_web_ui.py "$@"
