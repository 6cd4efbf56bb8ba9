#!/usr/bin/env bash
# Provide etcd, kube-apiserver and kube-controller-manager for integration tests and print
# the directory that holds them (the envtest convention: KUBEBUILDER_ASSETS).
#
#   hack/envtest.sh [--check]            the current Kubernetes (`hack/kube.sh --version`: v1.37.2)
#   hack/envtest.sh --oldest [--check]   the oldest Kubernetes we support (1.20)
#
# Current version:
# - If KUBEBUILDER_ASSETS holds etcd and kube-apiserver, print it and stop (setup-envtest's
#   directories have no kube-controller-manager; the tests that need it say so).
# - Otherwise hand over to hack/kube.sh, which builds the current Kubernetes and etcd from Go
#   modules once (about 10 minutes on two cores) and caches them in ~/.cache/serviceconnect-kube.
#
# Oldest version (--oldest; KUBEBUILDER_ASSETS is ignored here, so a caller can hold both):
# - If SC_ENVTEST_OLDEST_ASSETS holds etcd and kube-apiserver, print it and stop.
# - Otherwise build kube-apiserver and kube-controller-manager 1.20 once from Debian's
#   `kubernetes` source package and cache them outside the repository (SC_ENVTEST_CACHE, default
#   ~/.cache/serviceconnect-envtest); etcd is Debian's etcd-server. The first build takes
#   five to ten minutes on two cores and needs root; later calls print the cached directory.
#
# With --check, never build: print the directory or exit 1 (the test fixtures use this).
#
# Progress goes to stderr; stdout carries only the directory, so callers can do
#   export KUBEBUILDER_ASSETS=$(hack/envtest.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

check_only=false
oldest=false
for arg in "$@"; do
  case "$arg" in
    --check) check_only=true ;;
    --oldest) oldest=true ;;
    *) printf 'usage: %s [--oldest] [--check]\n' "$0" >&2; exit 2 ;;
  esac
done

need=(etcd kube-apiserver kube-controller-manager)

have_all() {
  local dir=$1 b
  for b in "${need[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

log() { printf 'envtest: %s\n' "$*" >&2; }

# A directory given from outside: used as it is if it holds etcd and kube-apiserver.
given() {
  local dir=$1
  [ -n "$dir" ] && [ -x "$dir/etcd" ] && [ -x "$dir/kube-apiserver" ] || return 1
  [ -x "$dir/kube-controller-manager" ] \
    || log "note: $dir has no kube-controller-manager; rollout tests will not run"
  printf '%s\n' "$dir"
}

if ! $oldest; then
  given "${KUBEBUILDER_ASSETS:-}" && exit 0
  if $check_only; then exec "$root/hack/kube.sh" --check; fi
  exec "$root/hack/kube.sh"
fi

# The oldest supported version: Kubernetes 1.20 from Debian's source package.
given "${SC_ENVTEST_OLDEST_ASSETS:-}" && exit 0

cache=${SC_ENVTEST_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/serviceconnect-envtest}
bin="$cache/bin"
if have_all "$bin"; then
  printf '%s\n' "$bin"
  exit 0
fi
if $check_only; then
  log "Kubernetes 1.20 is not built yet: run hack/envtest.sh --oldest (or set SC_ENVTEST_OLDEST_ASSETS)"
  exit 1
fi

if [ "$(id -u)" != 0 ]; then
  log "building needs root (apt-get); or set SC_ENVTEST_OLDEST_ASSETS to a directory with ${need[*]}"
  exit 1
fi

mkdir -p "$cache" "$bin"
exec 9>"$cache/.lock"
flock 9
if have_all "$bin"; then printf '%s\n' "$bin"; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
src_list=/etc/apt/sources.list.d/serviceconnect-deb-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  log "adding deb-src entries mirroring the existing deb entries"
  python3 - "$src_list" <<'PY'
import glob, sys
out = []
for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
    for stanza in open(path).read().split("\n\n"):
        lines = [l for l in stanza.splitlines() if l and not l.startswith("#")]
        fields = dict(l.split(":", 1) for l in lines if ":" in l)
        if fields.get("Types", "").strip() == "deb" and "debian" in fields.get("URIs", ""):
            out.append("\n".join(l.replace("Types: deb", "Types: deb-src", 1) if l.startswith("Types:") else l for l in lines))
try:
    for line in open("/etc/apt/sources.list"):
        if line.startswith("deb "):
            out.append(line.replace("deb ", "deb-src ", 1).strip())
except FileNotFoundError:
    pass
open(sys.argv[1], "w").write("\n\n".join(out) + "\n")
PY
fi

started=$SECONDS
log "first run: building kube-apiserver 1.20 and kube-controller-manager (5-10 minutes, once)"
log "installing the build tools (golang-1.19-go, rsync, etcd-server, reflect2)"
apt-get update -qq >&2
# gcc: Go 1.19 builds its code generators with cgo by default; dpkg-dev: apt-get source.
apt-get install -y -qq --no-install-recommends --no-upgrade golang-1.19-go rsync etcd-server \
  golang-github-modern-go-reflect2-dev make gcc libc6-dev dpkg-dev xz-utils ca-certificates >&2

work="$cache/src"
rm -rf "$work"; mkdir -p "$work"
cd "$work"
log "downloading Debian's kubernetes source package"
apt-get source --download-only kubernetes >&2
orig=$(ls kubernetes_*.orig.tar.* | head -n1)
mkdir tree
tar -xf "$orig" -C tree --strip-components=1
cd tree

# The vendored reflect2 1.0.1 crashes the API server under Go >= 1.18 (segfault in map
# iteration); Debian's packaged copy is fixed.
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
find vendor/github.com/modern-go/reflect2 -name '*_test.go' -delete

export PATH=/usr/lib/go-1.19/bin:$PATH
export GOFLAGS=-mod=vendor GO111MODULE=on GOCACHE="$cache/gocache" GOPATH="$cache/gopath"
log "make generated_files (a few minutes)"
make generated_files >&2
log "building kube-apiserver and kube-controller-manager (several minutes)"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager "$bin/"
ln -sf /usr/bin/etcd "$bin/etcd"
cd "$cache"
rm -rf "$work" "$cache/gocache" "$cache/gopath"
have_all "$bin"
log "done in $((SECONDS - started)) s: $bin"
printf '%s\n' "$bin"
