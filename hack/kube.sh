#!/usr/bin/env bash
# Build the current Kubernetes once and print the directory that holds it.
#
#   hack/kube.sh            build what is missing (first run: about 10 minutes on two cores), print the dir
#   hack/kube.sh --check    never build: print the dir, or exit 1 if it is not complete
#   hack/kube.sh --version  print the Kubernetes version the pins in hack/kube/ name
#
# Everything is built from Go modules (the Go module proxy is the only source needed), one module per
# program under hack/kube/, each with its go.mod and go.sum committed:
#   hack/kube/kubernetes  kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#                         (k8s.io/kubernetes with each staging module replaced by its release)
#   hack/kube/etcd        etcd 3.6 (etcd's own etcdmain)
#   hack/kube/coredns     CoreDNS with the plugins a cluster DNS needs
#   hack/kube/crictl      crictl, for looking at the node
# The cache (SC_KUBE_CACHE, default ~/.cache/serviceconnect-kube) is keyed by the Kubernetes version
# and a hash of hack/kube/, so changing a pin builds a new directory and never mixes versions.
#
# Progress goes to stderr; stdout carries only the directory:
#   export KUBEBUILDER_ASSETS=$(hack/kube.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mods="$root/hack/kube"

log() { printf 'kube: %s\n' "$*" >&2; }

version=$(awk '($1 == "k8s.io/kubernetes" && $2 ~ /^v/) { print $2; exit } ($1 == "require" && $2 == "k8s.io/kubernetes") { print $3; exit }' "$mods/kubernetes/go.mod")
[ -n "$version" ] || { log "no k8s.io/kubernetes requirement in $mods/kubernetes/go.mod"; exit 1; }

check_only=false
case "${1:-}" in
  --check) check_only=true ;;
  --version) printf '%s\n' "$version"; exit 0 ;;
  "") ;;
  *) printf 'usage: %s [--check|--version]\n' "$0" >&2; exit 2 ;;
esac

# component: module directory, then the packages it builds (binary name = last path element).
kube_pkgs=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
need=("${kube_pkgs[@]}" etcd coredns crictl)

key=$( (cd "$mods" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 \
  | sort -z | xargs -0 sha256sum; sed -n '/^# build:/,$p' "$root/hack/kube.sh") | sha256sum | cut -c1-12)
cache=${SC_KUBE_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/serviceconnect-kube}
bin="$cache/$version-$key/bin"

have_all() {
  local b
  for b in "${need[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if have_all; then printf '%s\n' "$bin"; exit 0; fi
if $check_only; then
  log "Kubernetes $version is not built yet: run hack/kube.sh"
  exit 1
fi

# build: everything below decides what the binaries are (it is part of the cache key).
command -v go >/dev/null || { log "needs Go (1.26 or newer) on PATH"; exit 1; }
mkdir -p "$cache" "$bin"
exec 9>"$cache/.lock"
flock 9
if have_all; then printf '%s\n' "$bin"; exit 0; fi

export GOFLAGS=-buildvcs=false CGO_ENABLED=${CGO_ENABLED:-1}
started=$SECONDS

# go build -v names each package as it compiles it; show a line every 100 of them.
progress() {
  awk -v what="$1" '
    /^#|:[0-9]+:[0-9]+: / { print > "/dev/stderr"; next }
    { n++; if (n % 100 == 0) { printf "kube: %s: %d packages compiled\n", what, n > "/dev/stderr"; fflush("/dev/stderr") } }
    END { printf "kube: %s: %d packages compiled\n", what, n > "/dev/stderr" }'
}

build() {
  local what=$1 dir=$2 ldflags=$3
  shift 3
  local missing=() p
  for p in "$@"; do [ -x "$bin/${p##*/}" ] || missing+=("$p"); done
  [ "${#missing[@]}" -gt 0 ] || return 0
  local t=$SECONDS tmp
  tmp=$(mktemp -d "$cache/build.XXXXXX")
  log "$what: go build ${missing[*]##*/}"
  (cd "$mods/$dir" && go build -v -trimpath -ldflags "$ldflags" -o "$tmp/" "${missing[@]}") 2>&1 | progress "$what"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { rm -rf "$tmp"; log "$what: build failed"; exit 1; }
  mv "$tmp"/* "$bin/"
  rmdir "$tmp"
  log "$what: done in $((SECONDS - t)) s"
}

minor=${version#v1.}
minor=${minor%%.*}
vflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  vflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  vflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

log "building Kubernetes $version, etcd, CoreDNS and crictl from Go modules into $bin"
log "(first run only: about 10 minutes on two cores; later runs print the directory at once)"
build kubernetes kubernetes "-s -w$vflags" "${kube_pkgs[@]/#/k8s.io/kubernetes/cmd/}"
build etcd etcd "-s -w" serviceconnect.local/hack/kube/etcd
build coredns coredns "-s -w -X github.com/coredns/coredns/coremain.GitCommit=module" serviceconnect.local/hack/kube/coredns
build crictl crictl "-s -w" sigs.k8s.io/cri-tools/cmd/crictl

have_all || { log "incomplete after the build: $(ls "$bin")"; exit 1; }
# Builds for other pins of hack/kube/ are stale now (about 600 MB each): keep only this one.
for old in "$cache"/v*-*; do
  [ "$old" = "$cache/$version-$key" ] || rm -rf "$old"
done
"$bin/kube-apiserver" --version >&2
log "done in $((SECONDS - started)) s: $bin"
printf '%s\n' "$bin"
