#!/usr/bin/env bash
# Run Service Connect locally: a real Kubernetes API server, the operator, examples/, and traffic.
#   hack/demo.sh               keep it running until Ctrl-C (prints the KUBECONFIG to use)
#   hack/demo.sh --once        set up, show, send traffic, tear down (what tests and CI run)
#   hack/demo.sh --no-traffic  skip the data path (no root, no network namespaces needed)
#
# Creates .venv with the project if missing, provides kube-apiserver/etcd (hack/envtest.sh;
# the first run builds them, 5-10 minutes, as root, with a progress line) and kubectl
# (hack/tools.sh), then hands over to hack/demo.py: API server, CRDs, operator, examples/, the
# example tasks in network namespaces with curl through both proxies. It leaves nothing running
# and nothing behind, whichever way it ends (Ctrl-C included).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=hack/lib/venv.sh
source hack/lib/venv.sh

ensure_venv test

# The first build runs in the foreground (Ctrl-C stops it, and its make and go, as usual) while a
# ticker in the background shows that it is alive: elapsed time and its latest progress line.
build_envtest() {
  local log ticker rc=0
  log=$(mktemp "${TMPDIR:-/tmp}/serviceconnect-envtest-build.XXXXXX")
  echo "demo: first run: building kube-apiserver 1.20 from Debian's source package (5-10 minutes, once)" >&2
  (
    start=$SECONDS
    while sleep 1; do
      elapsed=$((SECONDS - start))
      last=$(grep -a '^envtest:' "$log" | tail -n 1 | cut -c 10-80 || true)
      if [ -t 2 ]; then
        printf '\r\033[Kdemo: building the API server: %dm%02ds  %s' $((elapsed / 60)) $((elapsed % 60)) "$last" >&2
      elif [ $((elapsed % 30)) -eq 0 ]; then
        printf 'demo: building the API server: %dm%02ds  %s\n' $((elapsed / 60)) $((elapsed % 60)) "$last" >&2
      fi
    done
  ) &
  ticker=$!
  # shellcheck disable=SC2064  # expand now: the trap must kill this ticker and remove this log
  trap "kill $ticker 2>/dev/null || true; rm -f '$log'" EXIT
  KUBEBUILDER_ASSETS=$(hack/envtest.sh 2>"$log") || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if [ -t 2 ]; then printf '\r\033[K' >&2; fi
  if [ "$rc" -ne 0 ]; then
    echo "demo: building the API server failed (exit $rc); its last lines:" >&2
    tail -n 25 "$log" >&2
    exit "$rc"
  fi
  grep -a '^envtest: done' "$log" >&2 || true
  rm -f "$log"
  trap - EXIT
}

if hack/envtest.sh --check >/dev/null 2>&1; then
  KUBEBUILDER_ASSETS=$(hack/envtest.sh --check)
else
  build_envtest
fi
SC_TOOLS_DIR=$(hack/tools.sh)
export KUBEBUILDER_ASSETS SC_TOOLS_DIR
exec "$VENV/bin/python" hack/demo.py "$@"
