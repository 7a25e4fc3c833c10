#!/usr/bin/env bash
# Command 2 of the README: the whole test suite, with every check CI runs.
# Usage: scripts/test.sh [extra pytest arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# System packages this command needs (installed with apt when missing and run as root).
# The "add-on lint" step needs shellcheck and apparmor (apparmor_parser); the
# web UI's browser tests need Chromium (/usr/bin/chromium, driven by Playwright).
export HOYMILES_APT_PACKAGES="${HOYMILES_APT_PACKAGES:-mosquitto shellcheck apparmor s6 chromium}"
# shellcheck source=scripts/bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"

step() { printf '\n== %s\n' "$*"; }

# Prints (NUL-separated) "bash<TAB>path" or "auto<TAB>path" for every shell
# script under rootfs/ and addon/ (found by its shebang; either folder may be
# missing) and scripts/*.sh. s6/bashio scripts ("with-contenv", "bashio")
# have a shebang shellcheck does not know: they are checked as bash.
shell_scripts() {
  local dir file first
  for dir in rootfs addon; do
    [ -d "$dir" ] || continue
    while IFS= read -r -d '' file; do
      first=""
      IFS= read -r first <"$file" || true
      case "$first" in
        '#!'*with-contenv* | '#!'*bashio*) printf 'bash\t%s\0' "$file" ;;
        '#!'*/sh | '#!'*/sh\ * | '#!'*/bash | '#!'*/bash\ * | '#!'*env\ sh* | '#!'*env\ bash*)
          printf 'auto\t%s\0' "$file" ;;
      esac
    done < <(find "$dir" -type f -print0 | sort -z)
  done
  for file in scripts/*.sh; do
    printf 'auto\t%s\0' "$file"
  done
}

step "ruff"
ruff check src tests benchmarks scripts addon
step "mypy --strict src"
mypy --strict src
step "import layers (lint-imports; contracts in pyproject.toml)"
lint-imports --no-cache
step "generated protobuf code is up to date"
python scripts/gen_protos.py --check
step "add-on lint"
hadolint Dockerfile
yamllint --strict config.yaml repository.yaml translations/ docker-compose.yml bridge.example.yaml .yamllint .github/workflows/
bash_scripts=()
other_scripts=()
while IFS= read -r -d '' entry; do
  if [ "${entry%%$'\t'*}" = bash ]; then
    bash_scripts+=("${entry#*$'\t'}")
  else
    other_scripts+=("${entry#*$'\t'}")
  fi
done < <(shell_scripts)
if [ "${#bash_scripts[@]}" -gt 0 ]; then
  shellcheck -s bash "${bash_scripts[@]}"
fi
shellcheck -x "${other_scripts[@]}"
echo "shellcheck: ${#bash_scripts[@]} s6/bashio and ${#other_scripts[@]} other shell scripts"
# Supervisor loads apparmor.txt after installation; a syntax error only shows there.
PATH="$PATH:/usr/sbin:/sbin"
if command -v apparmor_parser >/dev/null 2>&1; then
  apparmor_parser --skip-kernel-load --skip-cache apparmor.txt
  echo "apparmor.txt: parsed"
else
  echo "apparmor_parser not found (apt install apparmor): apparmor.txt not checked"
fi

step "pytest"
# pytest exits 5 when it collected no test: set -e turns that into a failure.
python -m pytest "$@"
