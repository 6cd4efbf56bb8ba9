#!/usr/bin/env bash
# Run Service Connect on a real single-node Kubernetes on this machine.
#   hack/demo.sh               keep it running until Ctrl-C (prints the KUBECONFIG to use)
#   hack/demo.sh --once        set up, show, send traffic, tear down (what CI runs)
#   hack/demo.sh --netns ...   the faster demo without a kubelet: an API server and the operator, and
#                              the example tasks in network namespaces (hack/demo.py; --once and
#                              --no-traffic work there too)
#
# As root it installs what it needs (Debian packages of hack/system-packages.txt, a Python venv, the
# Kubernetes binaries built from Go modules by hack/kube.sh, kubectl and helm), brings the node up
# (hack/cluster.sh up), builds and loads the images (hack/build-images.sh), installs the chart,
# applies examples/, runs the tutorial's curl from the client pod through both proxies and prints the
# answer and the proxies' metrics (hack/demo_cluster.py). On every way out it leaves the machine as
# it was: a node it brought up goes down again. Not root: it says what to run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=hack/lib/venv.sh
source hack/lib/venv.sh
# shellcheck source=hack/lib/packages.sh
source hack/lib/packages.sh

netns=false
once=false
rest=()
for arg in "$@"; do
  case "$arg" in
    --netns) netns=true ;;
    --once) once=true; rest+=("$arg") ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) rest+=("$arg") ;;
  esac
done

if $netns; then
  ensure_venv test
  if [ "$(id -u)" = 0 ]; then ensure_system_packages; fi
  KUBEBUILDER_ASSETS=$(hack/envtest.sh)
  SC_TOOLS_DIR=$(hack/tools.sh)
  export KUBEBUILDER_ASSETS SC_TOOLS_DIR
  exec "$VENV/bin/python" hack/demo.py "${rest[@]}"
fi
for arg in "${rest[@]}"; do
  [ "$arg" = --once ] || { echo "demo: unknown option $arg (see hack/demo.sh --help)" >&2; exit 2; }
done

if [ "$(id -u)" != 0 ]; then
  cat >&2 <<EOF
demo: a real node needs root: it starts containerd and a kubelet, makes a bridge and iptables rules.
Run it as root:
  sudo $0 ${*}
or, without a kubelet (an API server, the operator and network namespaces; no root for --no-traffic):
  $0 --netns --no-traffic
EOF
  exit 1
fi

say() { printf '\n==> %s\n' "$*" >&2; }
started=$SECONDS
say "prerequisites: Debian packages, .venv, kubectl and helm"
ensure_system_packages
ensure_venv test
SC_TOOLS_DIR=$(hack/tools.sh)
export SC_TOOLS_DIR

# The first build runs in the foreground while a ticker shows that it is alive: elapsed time and
# its latest progress line.
if ! kube_bin=$(hack/kube.sh --check 2>/dev/null); then
  say "first run: building Kubernetes $(hack/kube.sh --version) from Go modules (about 10 minutes, once)"
  log=$(mktemp "${TMPDIR:-/tmp}/serviceconnect-kube-build.XXXXXX")
  (
    while sleep 30; do
      printf 'demo: building: %dm%02ds  %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) \
        "$(grep -a '^kube:' "$log" | tail -n 1 | cut -c 7-90)" >&2
    done
  ) &
  ticker=$!
  rc=0
  kube_bin=$(hack/kube.sh 2>"$log") || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    echo "demo: the build failed (exit $rc); its last lines:" >&2
    tail -n 25 "$log" >&2
    exit "$rc"
  fi
  grep -a '^kube: done' "$log" >&2 || true
  rm -f "$log"
fi
export KUBE_BIN=$kube_bin

brought_up=false
teardown() {
  local rc=$?
  if $brought_up; then
    say "tearing down: the node and everything it made"
    hack/cluster.sh down || true
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if ! hack/cluster.sh status >/dev/null 2>&1; then
  say "hack/cluster.sh up: etcd, the control plane, containerd, a kubelet, kube-proxy and CoreDNS"
  brought_up=true
  hack/cluster.sh up >/dev/null
fi
eval "$(hack/cluster.sh env)"

say "hack/build-images.sh: the operator, proxy, nginx and client images, loaded into the node"
tag=$(hack/build-images.sh --load containerd)

rc=0
"$VENV/bin/python" hack/demo_cluster.py --kubeconfig "$KUBECONFIG" --tools "$SC_TOOLS_DIR" --tag "$tag" \
  "${rest[@]}" || rc=$?
if $once; then say "done in $((SECONDS - started)) s"; fi
exit "$rc"
