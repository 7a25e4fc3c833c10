#!/usr/bin/env bash
# Runs the benchmarks (not part of the test suite). Extra args go to bench_decode.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec python benchmarks/bench_decode.py "$@"
