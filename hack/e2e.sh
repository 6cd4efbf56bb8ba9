#!/usr/bin/env bash
# Run the end-to-end tests (tests/e2e) on a real cluster: build the images, load them into the
# node, `helm install` the chart, run the seed tutorial's story and what only a real kubelet can
# show, then `helm uninstall`.
#
#   hack/e2e.sh                  everything (extra arguments go to pytest, e.g. -k pinning)
#
# Which cluster:
#   - SC_E2E_KUBECONFIG=FILE: the cluster that kubeconfig names (SC_E2E_LOAD=none|containerd|kind says
#     how images reach its nodes; default none, i.e. they are there already). The ambient KUBECONFIG is
#     never used by itself: tests that install and delete things run on a cluster named for them.
#   - otherwise, where a Docker engine and kind work: a kind cluster (SC_E2E_CLUSTER, default sc-e2e).
#   - otherwise: the single-node cluster of hack/cluster.sh on this machine (needs root). It is
#     brought up if it is not running, and taken down afterwards if this run brought it up.
# SC_E2E_KEEP=1 keeps a cluster this run created (to look around afterwards).
#
# Unlike a plain `pytest`, which skips the e2e tests where no cluster is given, this sets SC_E2E=1:
# a missing prerequisite is then an error, because the run was asked for.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { printf 'e2e: %s\n' "$*" >&2; }
start=$SECONDS

# shellcheck source=hack/lib/venv.sh
source hack/lib/venv.sh
ensure_venv test
SC_TOOLS_DIR=$(hack/tools.sh)
export SC_TOOLS_DIR SC_E2E=1

brought_up=false
cleanup() {
  if $brought_up && [ -z "${SC_E2E_KEEP:-}" ]; then
    log "taking the local cluster down"
    hack/cluster.sh down || true
  fi
}
trap cleanup EXIT

if [ -n "${SC_E2E_KUBECONFIG:-}" ]; then
  log "cluster: the one in $SC_E2E_KUBECONFIG"
  load=${SC_E2E_LOAD:-none}
  export SC_E2E_CLUSTER_KIND=kubeconfig
elif command -v docker >/dev/null && docker info >/dev/null 2>&1 && command -v kind >/dev/null; then
  log "cluster: kind"
  export SC_E2E_CLUSTER_KIND=kind
  load=kind
else
  log "cluster: the local node (hack/cluster.sh)"
  [ "$(id -u)" = 0 ] || { log "the local node needs root (or set KUBECONFIG to a cluster)"; exit 1; }
  if ! hack/cluster.sh status >/dev/null 2>&1; then
    t=$SECONDS
    brought_up=true
    hack/cluster.sh up >/dev/null
    log "cluster up in $((SECONDS - t)) s"
  fi
  eval "$(hack/cluster.sh env)"
  # The node is this machine: the tests may also look at pods from the host (network namespaces).
  export SC_E2E_CLUSTER_KIND=local SC_E2E_KUBECONFIG=$KUBECONFIG SC_E2E_LOCAL_NODE=1
  load=containerd
fi

if [ "$SC_E2E_CLUSTER_KIND" != kind ]; then
  t=$SECONDS
  SC_E2E_TAG=$(hack/build-images.sh --load "$load")
  export SC_E2E_TAG SC_E2E_SKIP_BUILD=1
  log "images $SC_E2E_TAG ready in $((SECONDS - t)) s"
fi

export SC_E2E_REPORT=${SC_E2E_REPORT:-$(mktemp --suffix=.json)}
t=$SECONDS
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -v --timeout=1800 tests/e2e "$@"
rc=$?
set -e
if [ -s "$SC_E2E_REPORT" ]; then
  log "figures measured on the way ($SC_E2E_REPORT):"
  cat "$SC_E2E_REPORT" >&2
fi
log "pytest exit $rc after $((SECONDS - t)) s (whole run $((SECONDS - start)) s)"
exit "$rc"
