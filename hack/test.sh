#!/usr/bin/env bash
# Run the tests: ruff, mypy (strict, on our packages) and pytest over tests/ against the current
# Kubernetes, then pytest once more over the version-sensitive tests (marker `oldest_k8s`) against the
# oldest Kubernetes we support (1.20). The full run (no arguments) also runs the proxy's tests
# (tests/unit/proxy, tests/integration/proxy) against the compiled build of its hot modules (the wheel's
# mypyc extensions, hack/build-compiled.sh; the first run is from the source tree, pure Python), and a
# test of each run asserts which build it loaded. Extra arguments go to the first pytest run, e.g.
#   hack/test.sh tests/unit      hack/test.sh -k crds
#
# Each run alone:
#   SC_SKIP_OLDEST=1 hack/test.sh [pytest args]    lint, mypy and the current Kubernetes only
#   hack/test.sh --oldest-only [pytest args]       only the oldest run (args go to it; default -m oldest_k8s)
#   hack/test.sh --compiled-only [pytest args]     only the compiled run (args go to it; default the proxy's
#                                                  unit and integration tests); SC_SKIP_COMPILED=1 leaves it
#                                                  out of the full run
#   SC_E2E=1 hack/test.sh                          also the e2e story on the local node (hack/e2e.sh, root);
#                                                  CI=true does this for the full run
#
# It prepares what the tests need first: .venv with the project and its [test] extra, the
# envtest binaries (KUBEBUILDER_ASSETS: hack/envtest.sh for the current Kubernetes, built once from Go
# modules by hack/kube.sh in about 10 minutes; hack/envtest.sh --oldest for 1.20, built once from Debian's
# source package in 5-10 minutes, which needs root) and kubectl/helm (SC_TOOLS_DIR, from hack/tools.sh).
# Where one of those cannot be had, the tests that need it are skipped with the reason (and the oldest
# run is left out), except under CI=true, where that is an error. SC_SKIP_ENVTEST=1 skips preparing
# the API server binaries (for running the unit layer on a machine where the first build is not wanted)
# and the oldest run with them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=hack/lib/venv.sh
source hack/lib/venv.sh

ci=false
case "${CI:-}" in 1 | true | yes) ci=true ;; esac

oldest_only=false
compiled_only=false
if [ "${1:-}" = "--oldest-only" ]; then
  oldest_only=true
  shift
elif [ "${1:-}" = "--compiled-only" ]; then
  compiled_only=true
  shift
fi
# The compiled run follows the full run (no pytest arguments), or is the only one with --compiled-only.
compiled=false
if $compiled_only || { [ $# -eq 0 ] && ! $oldest_only && [ -z "${SC_SKIP_COMPILED:-}" ]; }; then compiled=true; fi
# The e2e story on a real cluster (hack/e2e.sh: the local node here) follows the full run (no pytest
# arguments) under CI=true, and any run with SC_E2E=1; the first run then leaves tests/e2e to it.
e2e=false
if ! $oldest_only && ! $compiled_only && { [ "${SC_E2E:-}" = 1 ] || { $ci && [ $# -eq 0 ]; }; }; then e2e=true; fi
# The oldest Kubernetes we claim to support; the oldest run fails if its server is another version.
oldest_version=v1.20

ensure_venv test

# prepare WHAT: run hack/envtest.sh ARGS and print its directory; where that fails, fail under CI
# and otherwise print nothing (the tests that need the server skip with the reason).
prepare() {
  local what=$1 dir
  shift
  if ! hack/envtest.sh "$@" --check >/dev/null 2>&1; then
    printf 'test: building %s once (cached afterwards)\n' "$what" >&2
  fi
  if dir=$(hack/envtest.sh "$@"); then
    printf '%s\n' "$dir"
  elif $ci; then
    printf 'test: hack/envtest.sh %s failed; CI needs the real API server (%s)\n' "$*" "$what" >&2
    return 1
  else
    printf 'test: no %s; the tests against it will be skipped\n' "$what" >&2
  fi
}

current=""
oldest=""
if [ -z "${SC_SKIP_ENVTEST:-}" ]; then
  if ! $oldest_only; then
    current=$(prepare "the current Kubernetes (hack/kube.sh: about 10 minutes)") || exit 1
  fi
  if [ -z "${SC_SKIP_OLDEST:-}" ] && ! $compiled_only; then
    oldest=$(prepare "Kubernetes 1.20 (5-10 minutes, needs root)" --oldest) || exit 1
  fi
fi
if [ -n "$current" ]; then
  export KUBEBUILDER_ASSETS=$current
  # When it is hack/kube.sh's build, the server must be the version its pins name.
  if [ "$current" = "$(hack/kube.sh --check 2>/dev/null)" ]; then
    export SC_EXPECT_KUBE_VERSION
    SC_EXPECT_KUBE_VERSION=$(hack/kube.sh --version)
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
# pytest_run TITLE ARGS...: pytest -q ARGS; exit 5 (nothing collected) is a failure, not a pass.
pytest_run() {
  local title=$1 rc started=$SECONDS
  shift
  printf '\n== pytest%s\n' "$title"
  set +e
  "$VENV/bin/pytest" -q "$@"
  rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then
    echo "test: pytest collected no tests; that is a failure, not a pass" >&2
  fi
  printf '== pytest%s: exit %s after %s s\n' "$title" "$rc" "$((SECONDS - started))"
  [ "$rc" -eq 0 ] || status=1
}

if ! $oldest_only && ! $compiled_only; then
  step "$VENV/bin/ruff" check .
  step "$VENV/bin/ruff" format --check .
  step "$VENV/bin/mypy"
  if $e2e && [ $# -eq 0 ]; then set -- --ignore=tests/e2e; fi
  pytest_run "${SC_EXPECT_KUBE_VERSION:+ (Kubernetes $SC_EXPECT_KUBE_VERSION)}" "$@"
  set -- # the arguments were the first run's
fi

# The proxy's tests again, against the compiled build of its hot modules: the wheel's extensions first on
# PYTHONPATH (the sc-proxy processes of the integration tests inherit it); test_compiled*.py assert that
# they, not the .py files, were loaded.
if $compiled; then
  printf '\n== compiled build (hack/build-compiled.sh)\n'
  started=$SECONDS
  if site=$(hack/build-compiled.sh); then
    printf '== compiled build: ready after %s s\n' "$((SECONDS - started))"
    [ $# -gt 0 ] || set -- tests/unit/proxy tests/integration/proxy
    PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} SC_PROXY_EXPECT_BUILD=compiled \
      pytest_run " (the proxy's compiled build)" "$@"
  else
    printf '== compiled build: failed after %s s\n' "$((SECONDS - started))"
    status=1
  fi
  set --
fi

# The version-sensitive tests again, against the oldest supported Kubernetes.
if $compiled_only; then
  :
elif [ -n "$oldest" ]; then
  KUBEBUILDER_ASSETS=$oldest SC_EXPECT_KUBE_VERSION=$oldest_version \
    pytest_run " (oldest Kubernetes, $oldest_version: -m oldest_k8s)" -m oldest_k8s "$@"
elif $oldest_only; then
  echo "test: --oldest-only, but no binaries for the oldest Kubernetes ($oldest_version)" >&2
  status=1
elif [ -z "${SC_SKIP_ENVTEST:-}${SC_SKIP_OLDEST:-}" ]; then
  echo "test: the run against the oldest Kubernetes ($oldest_version) was left out: no binaries" >&2
fi

if $e2e; then
  printf '\n== e2e (hack/e2e.sh)\n'
  started=$SECONDS
  rc=0
  hack/e2e.sh || rc=$?
  printf '== e2e: exit %s after %s s\n' "$rc" "$((SECONDS - started))"
  [ "$rc" -eq 0 ] || status=1
fi

if [ "$status" -ne 0 ]; then
  echo "test: FAILED (see the sections above)" >&2
fi
exit "$status"
