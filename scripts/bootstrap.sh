# shellcheck shell=bash
# Sourced by scripts/demo.sh and scripts/test.sh: prepares everything the
# project needs on a fresh Debian/Ubuntu machine, then activates .venv.
#   - system packages via apt (only when running as root and one is missing)
#   - a virtualenv in .venv with the package and its extras at the exact
#     versions of constraints.txt, refreshed whenever pyproject.toml or
#     constraints.txt changes (scripts/update-constraints.sh renews the latter).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
CONSTRAINTS="$ROOT/constraints.txt"
EXTRAS="${HOYMILES_EXTRAS:-test,dev}"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

apt_install() {
  # apt_install PKG... : installs the missing ones when we are root.
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing system packages: ${missing[*]} (run as root, or install them yourself)"
    return 1
  fi
  log "installing system packages: ${missing[*]}"
  if [ ! -f /tmp/.hoymiles-apt-updated ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && touch /tmp/.hoymiles-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

PY="$(pick_python || true)"
if [ -z "$PY" ]; then
  apt_install python3 python3-venv python3-dev gcc
  PY="$(pick_python)" || { log "Python 3.11 or newer is required"; exit 1; }
fi
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_install python3-venv
fi
# Every package has wheels for the usual platforms; a compiler is only a fallback
# for a platform without them (crcmod-plus then builds its C extension).
if ! command -v gcc >/dev/null 2>&1; then
  apt_install gcc python3-dev || log "no C compiler: the CRC may use its slow pure-Python path"
fi
if [ -n "${HOYMILES_APT_PACKAGES:-}" ]; then
  # shellcheck disable=SC2086
  apt_install $HOYMILES_APT_PACKAGES
fi

stamp_value="$("$PY" -c 'import sys; print(sys.version)' | head -1)|$EXTRAS|$(sha256sum "$ROOT/pyproject.toml" "$CONSTRAINTS" | cut -d' ' -f1 | tr '\n' '|')"
stamp_file="$VENV/.bootstrap-stamp"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_value" ]; then
  log "preparing $VENV (one-time; takes a minute)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" --upgrade pip setuptools wheel >/dev/null
  "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" -e "${ROOT}[$EXTRAS]"
  printf '%s' "$stamp_value" >"$stamp_file"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
