#!/usr/bin/env bash
# Command 2 of the README: the whole test suite, with every check CI runs.
# Usage: scripts/test.sh [extra pytest arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# System packages this command needs (installed with apt when missing and run as root).
export HOYMILES_APT_PACKAGES="${HOYMILES_APT_PACKAGES:-mosquitto}"
# shellcheck source=scripts/bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"

step() { printf '\n== %s\n' "$*"; }

step "ruff"
ruff check src tests benchmarks scripts
step "mypy --strict src"
mypy --strict src
step "generated protobuf code is up to date"
python scripts/gen_protos.py --check
step "pytest"
# pytest exits 5 when it collected no test: set -e turns that into a failure.
python -m pytest "$@"
