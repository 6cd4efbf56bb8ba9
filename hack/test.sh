#!/usr/bin/env bash
# Run the tests: ruff, mypy (strict, on our packages) and pytest over tests/.
# Extra arguments go to pytest, e.g.  hack/test.sh tests/unit  or  hack/test.sh -k crds
#
# It prepares what the tests need first: .venv with the project and its [test] extra, the
# envtest binaries (KUBEBUILDER_ASSETS, from hack/envtest.sh; the first build takes 5-10
# minutes and needs root) and kubectl/helm (SC_TOOLS_DIR, from hack/tools.sh). Where one of
# those cannot be had, the tests that need it are skipped with the reason, except under
# CI=true, where that is an error. SC_SKIP_ENVTEST=1 skips preparing the API server binaries
# (for running the unit layer on a machine where the first build is not wanted).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=hack/lib/venv.sh
source hack/lib/venv.sh

ci=false
case "${CI:-}" in 1 | true | yes) ci=true ;; esac

ensure_venv test

if [ -z "${SC_SKIP_ENVTEST:-}" ]; then
  if ! [ -x "${KUBEBUILDER_ASSETS:-/nonexistent}/kube-apiserver" ] && ! hack/envtest.sh --check >/dev/null 2>&1; then
    printf 'test: building the envtest API server once (5-10 minutes; cached afterwards)\n' >&2
  fi
  if assets=$(hack/envtest.sh); then
    export KUBEBUILDER_ASSETS=$assets
  elif $ci; then
    echo "test: hack/envtest.sh failed; CI needs the real API server" >&2
    exit 1
  else
    echo "test: no envtest binaries; integration tests against the API server will be skipped" >&2
  fi
fi
if tools=$(hack/tools.sh); then
  export SC_TOOLS_DIR=$tools
elif $ci; then
  echo "test: hack/tools.sh failed; CI needs kubectl and helm" >&2
  exit 1
else
  echo "test: no kubectl/helm; the tests that use them will be skipped" >&2
fi

status=0
step() {
  printf '\n== %s\n' "$*"
  "$@" || { rc=$?; printf '== %s: exit %s\n' "$1" "$rc"; status=1; }
}
step "$VENV/bin/ruff" check .
step "$VENV/bin/ruff" format --check .
step "$VENV/bin/mypy"
printf '\n== pytest\n'
set +e
"$VENV/bin/pytest" -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests; that is a failure, not a pass" >&2
fi
[ "$rc" -eq 0 ] || status=1
if [ "$status" -ne 0 ]; then
  echo "test: FAILED (see the sections above)" >&2
fi
exit "$status"
