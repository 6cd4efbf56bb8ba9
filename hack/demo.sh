#!/usr/bin/env bash
# Set everything up and run the main job locally on a real Kubernetes API server:
#   hack/demo.sh          keep it running until Ctrl-C (prints the KUBECONFIG to use)
#   hack/demo.sh --once   set up, show, tear down (what tests and CI run)
#
# Creates .venv with the project if missing, provides kube-apiserver/etcd (hack/envtest.sh;
# the first run builds them, 5-10 minutes, as root) and kubectl (hack/tools.sh), then starts
# the API server, installs the CRDs (scctl crds), applies examples/ and shows what was created.
# It leaves nothing running and nothing behind.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=hack/lib/venv.sh
source hack/lib/venv.sh

ensure_venv test
if ! hack/envtest.sh --check >/dev/null 2>&1; then
  echo "demo: first run: building kube-apiserver 1.20 from Debian's source package (5-10 minutes, once)" >&2
fi
KUBEBUILDER_ASSETS=$(hack/envtest.sh)
SC_TOOLS_DIR=$(hack/tools.sh)
export KUBEBUILDER_ASSETS SC_TOOLS_DIR
exec "$VENV/bin/python" hack/demo.py "$@"
