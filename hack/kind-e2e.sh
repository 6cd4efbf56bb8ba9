#!/usr/bin/env bash
# Run the kind end-to-end tests (tests/e2e): create a kind cluster, build the operator and proxy
# images, load them into the cluster, `helm install` the chart, run the seed tutorial's story
# (traffic through both proxies, metrics, scaling, pinning, refusals) and `helm uninstall`.
#
#   hack/kind-e2e.sh                 everything; the cluster is deleted afterwards
#   hack/kind-e2e.sh -k pinning      extra arguments go to pytest
#
# Environment:
#   SC_E2E_CLUSTER=name   kind cluster to use or create (default sc-e2e)
#   SC_E2E_KEEP=1         keep a cluster this run created (to look around afterwards)
#   SC_E2E_SKIP_BUILD=1   reuse images already loaded into the cluster (tag SC_E2E_TAG, default e2e)
#
# Needs docker with a running engine, kind, and kubectl/helm (hack/tools.sh provides those two).
# Unlike a plain `pytest`, which skips the e2e tests where those are missing, this script sets
# SC_E2E=1 so a missing prerequisite is an error: the run was asked for.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

fail() { printf 'kind-e2e: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || fail "docker is not installed"
docker info >/dev/null 2>&1 || fail "the docker engine is not running (docker info failed)"
command -v kind >/dev/null || fail "kind is not installed (https://kind.sigs.k8s.io)"

python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi

SC_TOOLS_DIR=$(hack/tools.sh)
export SC_TOOLS_DIR
export SC_E2E=1
exec "$python" -m pytest -p no:cacheprovider -v --timeout=1800 tests/e2e "$@"
