#!/usr/bin/env bash
# Coverage-guided fuzzing (atheris, libFuzzer) of the parsers at the edge; not
# part of the test suite (tests/test_fuzz.py is the quick, standing version).
# Usage: scripts/fuzz.sh [SECONDS per target, default 60] [TARGET...]
#   wire      bytes from a DTU: frame splitter, codec, models, decode records
#   models    reply payloads of every modelled type, into the models
#   commands  names and payloads for the MQTT command registry
# Corpora and crash inputs stay in .cache/fuzz/<target>/; a crash input is
# replayed with: python scripts/fuzz_targets.py TARGET FILE
# Prints, per target, the inputs executed, the seconds and the crashes, and
# exits 1 when a target crashed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"

seconds="${1:-60}"
[ "$#" -gt 0 ] && shift
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(wire models commands)
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [wire|models|commands...]" >&2; exit 2 ;;
esac

# atheris as pinned by pyproject.toml's "fuzz" extra (binary wheels, no compiler needed)
mapfile -t fuzz_requirements < <(python -c '
import tomllib
with open("pyproject.toml", "rb") as file:
    print("\n".join(tomllib.load(file)["project"]["optional-dependencies"]["fuzz"]))
')
constraints=()
if [ -f constraints.txt ]; then
  constraints=(-c constraints.txt) # the pins every install of the project takes
fi
python -m pip install -q "${constraints[@]}" "${fuzz_requirements[@]}"

summary=()
crashed=0
for target in "${targets[@]}"; do
  dir=".cache/fuzz/$target"
  mkdir -p "$dir/corpus"
  if [ -z "$(ls -A "$dir/corpus")" ]; then
    # a starting corpus from the reference frames (wire and models only)
    python scripts/fuzz_targets.py --seed "$target" "$dir/corpus" >"$dir/seed.log" 2>&1 ||
      { cat "$dir/seed.log" >&2; exit 1; }
  fi
  before="$(find "$dir" -maxdepth 1 -name 'crash-*' | wc -l)"
  log="$dir/last-run.log"
  printf '\n== %s: %s s\n' "$target" "$seconds"
  status=0
  python scripts/fuzz_targets.py "$target" "$dir/corpus" \
    -max_total_time="$seconds" -artifact_prefix="$dir/" -print_final_stats=1 >"$log" 2>&1 ||
    status=$?
  grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done |==[0-9]+== ERROR| *=== Uncaught)' "$log" || true
  grep -A1 -E '^ *=== Uncaught' "$log" | tail -1 || true
  runs="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)"
  took="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log" | tail -1)"
  if [ -z "$runs" ]; then
    # stopped early (a crash): the last progress line has the count so far
    runs="$(sed -n 's/^#\([0-9]*\)[[:space:]].*/\1/p' "$log" | tail -1)"
  fi
  crashes=$(($(find "$dir" -maxdepth 1 -name 'crash-*' | wc -l) - before))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1 # stopped on an error before writing its input: the log tells
  fi
  [ "$crashes" -eq 0 ] || crashed=1
  summary+=("$(printf '%-9s %10s inputs %5s s %3d crashes' "$target" "${runs:-?}" "${took:-?}" "$crashes")")
done

printf '\n== summary (logs in .cache/fuzz/<target>/last-run.log)\n'
printf '%s\n' "${summary[@]}"
exit "$crashed"
