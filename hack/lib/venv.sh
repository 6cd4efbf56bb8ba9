# shellcheck shell=bash
# Sourced by hack/test.sh and hack/demo.sh: make sure .venv exists and holds this project.
#
# ensure_venv EXTRAS   e.g. ensure_venv test
# Creates .venv with python3 if missing and (re)installs the project editable with EXTRAS
# whenever pyproject.toml changed since the last install. Sets VENV to its path.

ensure_venv() {
  local extras=$1 root stamp want
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  VENV="$root/.venv"
  if [ ! -x "$VENV/bin/python" ]; then
    printf 'setup: creating %s\n' "$VENV" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
  stamp="$VENV/.serviceconnect-installed"
  want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1) [$extras]"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    printf 'setup: installing the project with [%s] into .venv\n' "$extras" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$root[$extras]" >&2
    printf '%s\n' "$want" >"$stamp"
  fi
}
