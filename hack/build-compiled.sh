#!/usr/bin/env bash
# Build the proxy's compiled wheel (setup.py: the modules of sidecar/sc_proxy/compiled.py, by mypyc) with
# .venv's Python, unpack it, and print the directory to put first on PYTHONPATH:
#
#   PYTHONPATH=$(hack/build-compiled.sh) .venv/bin/python hack/bench-http1-path
#
# hack/test.sh runs the proxy's tests against it. Cached under a hash of its inputs (setup.py,
# pyproject.toml, sidecar/sc_proxy, operator/sc_operator, the Python version) in $SC_COMPILED_CACHE
# (default ~/.cache/serviceconnect-compiled); entries unused for a week are removed. Needs gcc and the
# Python headers (Debian: python3-dev); pip fetches the build requirements (pyproject's build-system).
# Progress and the compiler's output go to stderr (a log in the cache entry); stdout carries only the path.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=hack/lib/venv.sh
source hack/lib/venv.sh
ensure_venv test

cache=${SC_COMPILED_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/serviceconnect-compiled}
key=$(
  {
    "$VENV/bin/python" -c 'import sys, sysconfig; print(sys.version, sysconfig.get_config_var("EXT_SUFFIX"))'
    sha256sum setup.py pyproject.toml
    find sidecar/sc_proxy operator/sc_operator -type f -name '*.py' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)
entry="$cache/$key"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
find "$cache" -mindepth 1 -maxdepth 1 -type d -mtime +7 -exec rm -rf {} + 2>/dev/null || true
if [ ! -f "$entry/site/.complete" ]; then
  rm -rf "$entry"
  mkdir -p "$entry/wheel" "$entry/site"
  printf 'build-compiled: building the compiled wheel (mypyc; about a minute; log: %s)\n' "$entry/build.log" >&2
  started=$SECONDS
  # setuptools' and mypyc's scratch directory: a stale build/lib would put deleted modules in the wheel.
  rm -rf "$root/build"
  if ! env -u SC_PROXY_PURE "$VENV/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps \
    --wheel-dir "$entry/wheel" "$root" >"$entry/build.log" 2>&1; then
    tail -n 40 "$entry/build.log" >&2
    printf 'build-compiled: the build failed (log: %s)\n' "$entry/build.log" >&2
    exit 1
  fi
  "$VENV/bin/python" -m zipfile -e "$entry"/wheel/*.whl "$entry/site"
  touch "$entry/site/.complete"
  printf 'build-compiled: built in %s s\n' "$((SECONDS - started))" >&2
fi
touch "$entry"
printf '%s\n' "$entry/site"
