#!/usr/bin/env bash
# Build the images a local cluster needs without any container registry, load them into the
# node's containerd (or kind), and print their tag.
#
#   serviceconnect.local/sc-operator:TAG   operator/Dockerfile
#   serviceconnect.local/sc-proxy:TAG      sidecar/Dockerfile
#   serviceconnect.local/nginx:TAG         Debian's nginx: the welcome page on port 80, logs on stdout/stderr
#   serviceconnect.local/client:TAG        curl, wget (one try, like busybox's) and sh for the tutorial client
#   serviceconnect.local/pause:TAG         Kubernetes' pause.c, static; also tagged with its own version
#                                          (pause:3.10.2), the name a containerd sandbox_image can keep
#
# TAG is a short hash of the inputs (both Dockerfiles, .dockerignore, pyproject.toml, setup.py,
# operator/sc_operator, sidecar/sc_proxy and this script), so a changed tree gives a new tag and
# a pod never runs a stale image under an old name. Progress goes to stderr; stdout carries only
# the tag:
#   TAG=$(hack/build-images.sh)
#
# Options:
#   --tag T                    use T instead of the content hash
#   --only NAME[,NAME]         operator, proxy, nginx, client, pause (repeatable; default all)
#   --load containerd|kind|none|auto
#                              auto (the default): containerd if SC_CONTAINERD_ADDRESS is set, or
#                              if /run/containerd/containerd.sock is a socket and no Docker engine
#                              did the build; otherwise none (the images stay in the builder)
#   --kind-cluster NAME        for --load kind (default $SC_KIND_CLUSTER, $KIND_CLUSTER_NAME, "kind")
#   --rebuild                  ignore cached images and build everything again (a fresh base too)
#   -v, --verbose              stream build output to stderr (default: logs in the cache)
#
# How: with `docker build` where a Docker engine answers (`docker info`), else buildah (chroot
# isolation, its own image store in the cache below). The Python images, nginx and the client
# start from a local Debian base made with debootstrap from the mirror apt already uses here
# (serviceconnect.local/debian-python:<suite>-<hash>: python3, python3-venv, python-is-python3,
# iptables, ca-certificates; security updates applied); the Dockerfiles get it as PYTHON_IMAGE.
# Set SC_PYTHON_IMAGE to use an existing Debian-based Python image instead (e.g.
# python:3.11.11-slim-bookworm where a registry is reachable). sc-proxy's build stage installs gcc
# (and python3-dev where the base lacks the headers) with the base's apt and compiles the proxy's
# hot modules with mypyc (setup.py) against the image's own Python; its final stage has no compiler.
# Each image is cached under a key of its own inputs, so a Python-only change rebuilds only
# sc-operator and sc-proxy and merely re-tags the rest. Loading into containerd is skipped for images it already holds. Behind a
# TLS-intercepting egress, buildah builds see this machine's CA bundle (pip in the Dockerfiles).
#
# Needs root for buildah and debootstrap (a Docker engine with SC_PYTHON_IMAGE does not);
# missing Debian packages (buildah, debootstrap, gcc, libc6-dev, containerd for ctr) are
# installed with apt-get. pause.c comes from k8s.io/kubernetes in the Go module cache
# (`go mod download`), or from SC_PAUSE_SRC.
#
# Environment:
#   SC_CONTAINERD_ADDRESS   containerd socket to load into (default /run/containerd/containerd.sock)
#   SC_IMAGES_CACHE         cache directory (default ~/.cache/serviceconnect-images)
#   SC_BUILDER              docker or buildah instead of the automatic choice
#   SC_DEBIAN_MIRROR        the mirror for debootstrap (default: from /etc/apt sources)
#   SC_DEBIAN_SECURITY_MIRROR  security mirror written into the base ("" for none; default from /etc/apt)
#   SC_DEBIAN_SUITE         default bookworm
#   SC_PYTHON_IMAGE         base image instead of the debootstrap one (Debian, with /usr/sbin/policy-rc.d)
#   SC_PAUSE_SRC            path of pause.c instead of the Go module cache
#   SC_BUILD_CA_BUNDLE      CA bundle pip trusts during buildah builds (default /etc/ssl/certs/ca-certificates.crt)
#   SC_BUILDAH_DRIVER       buildah storage driver (default overlay; vfs where overlay cannot mount)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
self="$root/hack/build-images.sh"
registry=serviceconnect.local
suite=${SC_DEBIAN_SUITE:-bookworm}
k8s_module=k8s.io/kubernetes@v1.37.2
all_names=(operator proxy nginx client pause)
# netbase: /etc/protocols and /etc/services; passwd: groupadd/useradd in the Dockerfiles.
base_packages=(python3 python3-venv python-is-python3 ca-certificates iptables netbase passwd)

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$self"; }

# ---------------------------------------------------------------------------------------------
# options

tag='' load=auto kind_cluster=${SC_KIND_CLUSTER:-${KIND_CLUSTER_NAME:-kind}} rebuild=false verbose=false
selected=()
while [ $# -gt 0 ]; do
  case $1 in
    --tag) [ $# -ge 2 ] || die "--tag needs a value"; tag=$2; shift 2 ;;
    --tag=*) tag=${1#*=}; shift ;;
    --load) [ $# -ge 2 ] || die "--load needs a value"; load=$2; shift 2 ;;
    --load=*) load=${1#*=}; shift ;;
    --only|--only=*)
      if [ "$1" = --only ]; then [ $# -ge 2 ] || die "--only needs a value"; v=$2; shift 2
      else v=${1#*=}; shift; fi
      IFS=, read -ra parts <<<"$v"
      for p in "${parts[@]}"; do
        case $p in
          operator|sc-operator) selected+=(operator) ;;
          proxy|sc-proxy) selected+=(proxy) ;;
          nginx|client|pause) selected+=("$p") ;;
          *) die "--only: unknown image '$p' (one of: ${all_names[*]})" ;;
        esac
      done ;;
    --kind-cluster) [ $# -ge 2 ] || die "--kind-cluster needs a value"; kind_cluster=$2; shift 2 ;;
    --kind-cluster=*) kind_cluster=${1#*=}; shift ;;
    --rebuild) rebuild=true; shift ;;
    -v|--verbose) verbose=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) log "unknown option '$1' (see --help)"; exit 2 ;;
  esac
done
case $load in containerd|kind|none|auto) ;; *) die "--load: containerd, kind, none or auto" ;; esac
[ "${#selected[@]}" -gt 0 ] || selected=("${all_names[@]}")
want() { local n; for n in "${selected[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

ref_of() {
  case $1 in operator|proxy) printf '%s/sc-%s' "$registry" "$1" ;; *) printf '%s/%s' "$registry" "$1" ;; esac
}

# ---------------------------------------------------------------------------------------------
# the tag: a hash of what goes into the images (README.md, also in the build context, is left
# out: it changes only the package's long description)

sources_hash() {  # everything both Python images copy, without the Dockerfiles
  (
    cd "$root"
    find operator/sc_operator sidecar/sc_proxy -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum
    # setup.py and pyproject.toml's build-system: what sc-proxy's compiled modules are and how they are built
    sha256sum pyproject.toml setup.py .dockerignore
  ) | sha256sum | cut -c1-64
}
src_hash=$(sources_hash)
own_tag=true
if [ -z "$tag" ]; then
  own_tag=false
  tag=$( (cd "$root" && printf '%s\n' "$src_hash" && sha256sum operator/Dockerfile sidecar/Dockerfile hack/build-images.sh) \
    | sha256sum | cut -c1-12)
fi
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--tag: '$tag' is not a valid image tag"
key_of() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

# ---------------------------------------------------------------------------------------------
# builder: docker where an engine answers, else buildah with its own store in the cache

cache=${SC_IMAGES_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/serviceconnect-images}
builder=${SC_BUILDER:-}
if [ -z "$builder" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then builder=docker; else builder=buildah; fi
fi
case $builder in docker|buildah) ;; *) die "SC_BUILDER: docker or buildah" ;; esac

containerd_address=${SC_CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
if [ "$load" = auto ]; then
  if [ -n "${SC_CONTAINERD_ADDRESS:-}" ] || { [ -S "$containerd_address" ] && [ "$builder" = buildah ]; }; then
    load=containerd
  else
    load=none
  fi
fi

needs_base=false
for n in operator proxy nginx client; do want "$n" && needs_base=true; done
debootstrap_base=false
$needs_base && [ -z "${SC_PYTHON_IMAGE:-}" ] && debootstrap_base=true

is_root() { [ "$(id -u)" = 0 ]; }
if [ "$builder" = buildah ] && ! is_root; then
  die "building with buildah needs root (chroot isolation, its own store); run as root or start a Docker engine"
fi
if $debootstrap_base && ! is_root; then
  die "the debootstrap base needs root; run as root or set SC_PYTHON_IMAGE to a Debian-based Python image"
fi

# Debian packages for whatever is missing; apt-get as root, else the command to run.
missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
[ "$builder" = buildah ] && need_cmd buildah buildah
$debootstrap_base && need_cmd debootstrap debootstrap
if want pause; then
  need_cmd gcc gcc
  [ -f "$(gcc -print-file-name=libc.a 2>/dev/null)" ] || missing+=(libc6-dev)
fi
[ "$load" = containerd ] && need_cmd ctr containerd
if [ "${#missing[@]}" -gt 0 ]; then
  is_root || die "missing tools; run as root: apt-get install -y --no-install-recommends ${missing[*]}"
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # Packages with services (containerd) must not start them on this machine.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >&2
  if [ -n "$(trap -p EXIT)" ]; then rm -f "$policy"; trap - EXIT; fi
fi
[ "$load" = kind ] && ! command -v kind >/dev/null 2>&1 && die "--load kind: kind is not installed (https://kind.sigs.k8s.io)"

mkdir -p "$cache/logs"
exec 9>"$cache/.lock"
flock 9

store="$cache/storage"
# buildah's run-time state (locks, mount counts) belongs on tmpfs, one directory per store.
runroot="/run/serviceconnect-images/$(key_of "$store")"
bh() { buildah --root "$store" --runroot "$runroot" --storage-driver "${SC_BUILDAH_DRIVER:-overlay}" "$@"; }

img_exists() {
  if [ "$builder" = docker ]; then docker image inspect "$1" >/dev/null 2>&1
  else bh inspect --type image "$1" >/dev/null 2>&1; fi
}
img_id() {
  if [ "$builder" = docker ]; then docker image inspect -f '{{.Id}}' "$1"
  else bh inspect --type image --format '{{.FromImageID}}' "$1"; fi
}
img_tag() { if [ "$builder" = docker ]; then docker tag "$1" "$2" >&2; else bh tag "$1" "$2"; fi; }
img_size() {
  if [ "$builder" = docker ]; then docker image ls --format '{{.Size}}' "$1"
  else bh images --format '{{.Size}}' "$1" | sed -n 1p; fi
}
img_list() {  # "NAME TAG" lines
  if [ "$builder" = docker ]; then docker image ls --format '{{.Repository}} {{.Tag}}'
  else bh images --noheading --format '{{.Name}} {{.Tag}}'; fi
}
img_rmi() { if [ "$builder" = docker ]; then docker rmi "$1"; else bh rmi "$1"; fi >/dev/null 2>&1 || true; }
img_save() {  # REF FILE: a docker-archive that keeps the name
  if [ "$builder" = docker ]; then docker save -o "$2" "$1"
  else bh push --quiet "$1" "docker-archive:$2:$1" >/dev/null; fi
}
# img_build NAME CONTEXT CONTAINERFILE REF [builder args...]; output in $cache/logs/NAME.log
img_build() {
  local name=$1 context=$2 file=$3 ref=$4 logf="$cache/logs/$1.log" rc=0
  shift 4
  if [ "$builder" = docker ]; then
    set -- docker build --file "$file" --tag "$ref" "$@" "$context"
  else
    set -- bh bud --isolation chroot --format docker --pull=never --layers=false \
      --file "$file" --tag "$ref" "$@" "$context"
  fi
  if $verbose; then
    "$@" 2>&1 | tee "$logf" >&2 || rc=$?
  else
    "$@" >"$logf" 2>&1 || rc=$?
  fi
  if [ "$rc" != 0 ]; then
    $verbose || tail -n 40 "$logf" >&2
    die "building $ref failed (log: $logf)"
  fi
}

work=$(mktemp -d "$cache/work.XXXXXX")
# Anything debootstrap left mounted below DIR is unmounted before DIR is removed.
release_mounts() {
  local dir m
  dir=$(realpath "$1")
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  ! awk -v d="$dir/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts
}
cleanup() {
  if release_mounts "$work"; then rm -rf --one-file-system "$work"
  else log "left $work in place: something is still mounted below it"; fi
}
trap cleanup EXIT

if [ "$builder" = buildah ]; then
  # Containers of an interrupted earlier run (the store is ours alone and we hold the lock).
  bh rm --all >/dev/null 2>&1 || true
fi

timings=()
step_start=0
step() { step_start=$SECONDS; }
done_step() { timings+=("$1: $((SECONDS - step_start)) s"); log "$1: $((SECONDS - step_start)) s"; }

# ---------------------------------------------------------------------------------------------
# the base: debootstrap minbase + Python, from the mirror this machine's apt uses

apt_uri_for() {  # SUITE -> the first URI of an enabled deb source that lists exactly SUITE
  local want=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v want="$want" '
      BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^[ \t]*#/ || (p = index($i, ":")) == 0) continue
          key = tolower($i); key = substr(key, 1, p - 1); val = substr($i, p + 1)
          gsub(/[ \t]+/, " ", val)
          if (key == "types") types = " " val " "
          else if (key == "uris") uris = val
          else if (key == "suites") suites = " " val " "
          else if (key == "enabled") enabled = val
        }
        if (index(types, " deb ") && index(suites, " " want " ") && enabled !~ /no/) {
          split(uris, u, " "); for (j in u) if (u[j] != "") { print u[j]; exit }
        }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v want="$want" '
      $1 == "deb" {
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == want) { print $i; exit }
      }' "$f"
  done
}

prepare_rootfs() {  # ROOTFS MIRROR SECURITY_MIRROR: make a debootstrap tree a container base
  local r=$1 mirror=$2 security=$3 keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  rm -f "$r/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n' \
      "$mirror" "$suite" "$suite" "$keyring"
    [ -z "$security" ] \
      || printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
        "$security" "$suite" "$keyring"
  } >"$r/etc/apt/sources.list.d/debian.sources"
  # No service starts when a package is installed in a build (buildah's chroot isolation shares
  # the host's network: an nginx postinst would bind the host's port 80).
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
  chmod 755 "$r/usr/sbin/policy-rc.d"
  # What Debian's own container images do: no .deb files or apt caches left in layers, and no
  # documentation, manual pages or translations installed.
  cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  printf 'Acquire::Languages "none";\n' >"$r/etc/apt/apt.conf.d/docker-no-languages"
  cat >"$r/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$r/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/groff/* "$r"/usr/share/lintian/*
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  # The runtime provides /dev, /proc, /sys, /etc/hosts, /etc/hostname and /etc/resolv.conf;
  # nothing of this machine goes into the image.
  find "$r/dev" "$r/proc" "$r/sys" "$r/run" "$r/tmp" -mindepth 1 -delete
  rm -f "$r/etc/resolv.conf" "$r/etc/machine-id"
  printf 'localhost\n' >"$r/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin \
    "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old "$r"/var/log/apt/* "$r"/var/log/*.log
}

base_containerfile() {
  cat <<'EOF'
FROM scratch
ADD rootfs.tar /
RUN apt-get update \
 && apt-get -y upgrade \
 && rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/*.log \
 && python -m ensurepip --version \
 && iptables --version
ENV LANG=C.UTF-8
CMD ["bash"]
EOF
}

build_base() {  # REF
  local ref=$1 mirror security rootfs="$work/base/rootfs" dlog="$cache/logs/debootstrap.log"
  mirror=${SC_DEBIAN_MIRROR:-$(apt_uri_for "$suite" | sed -n 1p)}
  [ -n "$mirror" ] || die "no apt source for '$suite' in /etc/apt; set SC_DEBIAN_MIRROR to a Debian mirror URL"
  if [ -n "${SC_DEBIAN_SECURITY_MIRROR+set}" ]; then security=$SC_DEBIAN_SECURITY_MIRROR
  else security=$(apt_uri_for "$suite-security" | sed -n 1p); fi
  mkdir -p "$work/base" "$cache/debs"
  log "debootstrap $suite from $mirror (about a minute; log: $dlog)"
  local includes
  includes=$(IFS=,; printf '%s' "${base_packages[*]}")
  local t=$SECONDS
  if ! debootstrap --variant=minbase --include="$includes" --cache-dir="$cache/debs" \
    "$suite" "$rootfs" "$mirror" >"$dlog" 2>&1; then
    tail -n 30 "$dlog" >&2
    die "debootstrap failed (log: $dlog)"
  fi
  log "debootstrap: $((SECONDS - t)) s"
  release_mounts "$rootfs" || die "$rootfs: something is still mounted below it"
  prepare_rootfs "$rootfs" "$mirror" "$security"
  tar -C "$rootfs" --numeric-owner -cf "$work/base/rootfs.tar" .
  release_mounts "$rootfs" && rm -rf --one-file-system "$rootfs"
  base_containerfile >"$work/base/Containerfile"
  local squash=()
  [ "$builder" = buildah ] && squash=(--squash)
  log "building $ref (security updates from ${security:-nowhere})"
  img_build base "$work/base" "$work/base/Containerfile" "$ref" "${squash[@]}"
  rm -f "$work/base/rootfs.tar"
}

# ---------------------------------------------------------------------------------------------
# the images

nginx_containerfile() {  # BASE
  cat <<EOF
FROM $1
# Debian's nginx with its default site (the "Welcome to nginx!" page) on port 80, IPv4 only
# (a pod without IPv6 would make "listen [::]:80" fail), logging to stdout/stderr. Every answer names
# the pod (its hostname) in X-Served-By, so a client can tell which task served it.
RUN set -eu; \\
    test -x /usr/sbin/policy-rc.d || { echo "the base has no policy-rc.d: nginx would start during the build" >&2; exit 1; }; \\
    apt-get update; \\
    apt-get install -y --no-install-recommends nginx; \\
    rm -rf /var/lib/apt/lists/*; \\
    sed -i '/listen \\[::\\]:80/d' /etc/nginx/sites-available/default; \\
    ln -sf /dev/stdout /var/log/nginx/access.log; \\
    ln -sf /dev/stderr /var/log/nginx/error.log; \\
    printf 'add_header X-Served-By \$hostname always;\\n' >/etc/nginx/conf.d/served-by.conf; \\
    grep -q 'Welcome to nginx!' /var/www/html/index.nginx-debian.html; \\
    nginx -t
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
}

client_containerfile() {  # BASE
  cat <<EOF
FROM $1
# curl and GNU wget. Not busybox, which the tutorial's client image was: Debian's busybox 1.35 is
# built without wget's -T and crashes on it (fixed in 1.36.1-5). GNU wget is held to busybox's
# single attempt (its own default is 20), so a failed request fails at once, as in the tutorial.
RUN set -eu; \\
    test -x /usr/sbin/policy-rc.d || { echo "the base has no policy-rc.d" >&2; exit 1; }; \\
    apt-get update; \\
    apt-get install -y --no-install-recommends curl wget; \\
    rm -rf /var/lib/apt/lists/*; \\
    printf '\\n# one attempt, as busybox wget makes\\ntries = 1\\n' >>/etc/wgetrc; \\
    wget --version | head -n1; \\
    curl --version | head -n1
CMD ["sh"]
EOF
}

pause_containerfile() {
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
}

pause_source() {  # prints the path of pause.c
  if [ -n "${SC_PAUSE_SRC:-}" ]; then
    [ -f "$SC_PAUSE_SRC" ] || die "SC_PAUSE_SRC=$SC_PAUSE_SRC: no such file"
    printf '%s\n' "$SC_PAUSE_SRC"; return
  fi
  local dir=
  if command -v go >/dev/null 2>&1; then
    # Outside any module; a no-op when the module is cached.
    dir=$(cd "$work" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "$k8s_module" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || true
  fi
  [ -n "$dir" ] || dir="$HOME/go/pkg/mod/$k8s_module"
  [ -f "$dir/build/pause/linux/pause.c" ] \
    || die "pause.c not found: install Go and run 'go mod download $k8s_module', or set SC_PAUSE_SRC"
  printf '%s\n' "$dir/build/pause/linux/pause.c"
}

# ensure NAME KEY BUILD_FUNCTION: reuse the image cached under KEY or build it; tag it TAG
ensure() {
  local name=$1 key=$2 fn=$3 ref keyref
  ref=$(ref_of "$name")
  keyref="$ref:key-$key"
  step
  if ! $rebuild && img_exists "$keyref"; then
    img_tag "$keyref" "$ref:$tag"
    done_step "$name (cached)"
  else
    log "building $ref (log: $cache/logs/$name.log)"
    "$fn" "$keyref"
    img_tag "$keyref" "$ref:$tag"
    done_step "$name"
  fi
  built+=("$ref:$tag")
  keep+=("$keyref" "$ref:$tag")
}

# pip in the Dockerfiles must trust what this machine trusts (a TLS-intercepting egress has its
# own CA): Debian's pip reads /etc/ssl/certs/ca-certificates.crt, so buildah bind-mounts the
# host's bundle there for the build's RUN steps; nothing of it stays in the image.
ca_bundle=${SC_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
ca_mount=()
[ "$builder" = buildah ] && [ -f "$ca_bundle" ] && ca_mount=(--volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro")
build_operator() {
  img_build operator "$root" "$root/operator/Dockerfile" "$1" --build-arg "PYTHON_IMAGE=$base_ref" "${ca_mount[@]}"
}
build_proxy() {
  img_build proxy "$root" "$root/sidecar/Dockerfile" "$1" --build-arg "PYTHON_IMAGE=$base_ref" "${ca_mount[@]}"
}
build_nginx() {
  mkdir -p "$work/nginx"
  nginx_containerfile "$base_ref" >"$work/nginx/Containerfile"
  img_build nginx "$work/nginx" "$work/nginx/Containerfile" "$1"
}
build_client() {
  mkdir -p "$work/client"
  client_containerfile "$base_ref" >"$work/client/Containerfile"
  img_build client "$work/client" "$work/client/Containerfile" "$1"
}
build_pause() {
  mkdir -p "$work/pause"
  gcc -Os -Wall -Werror -static "-DVERSION=v$pause_version-serviceconnect" -o "$work/pause/pause" "$pause_c"
  strip "$work/pause/pause"
  pause_containerfile >"$work/pause/Containerfile"
  img_build pause "$work/pause" "$work/pause/Containerfile" "$1"
}

built=() keep=()
total_start=$SECONDS
log "tag $tag; builder $builder; load: $load; images: ${selected[*]}"

if $needs_base; then
  if [ -n "${SC_PYTHON_IMAGE:-}" ]; then
    base_ref=$SC_PYTHON_IMAGE
    img_exists "$base_ref" || die "SC_PYTHON_IMAGE=$base_ref is not in the $builder image store"
  else
    base_ref="$registry/debian-python:$suite-$(key_of "$suite" "${base_packages[*]}" \
      "$(declare -f prepare_rootfs base_containerfile build_base)" | cut -c1-12)"
    step
    if ! $rebuild && img_exists "$base_ref"; then
      done_step "base (cached)"
    else
      build_base "$base_ref"
      done_step "base"
    fi
    keep+=("$base_ref")
  fi
  base_id=$(img_id "$base_ref")
fi

if want operator; then
  ensure operator "$(key_of operator "$base_id" "$src_hash" "$(sha256sum <"$root/operator/Dockerfile")" \
    "$(declare -f build_operator img_build)")" build_operator
fi
if want proxy; then
  ensure proxy "$(key_of proxy "$base_id" "$src_hash" "$(sha256sum <"$root/sidecar/Dockerfile")" \
    "$(declare -f build_proxy img_build)")" build_proxy
fi
want nginx && ensure nginx "$(key_of nginx "$base_id" "$(declare -f nginx_containerfile build_nginx)")" build_nginx
want client && ensure client "$(key_of client "$base_id" "$(declare -f client_containerfile build_client)")" build_client
if want pause; then
  pause_c=$(pause_source)
  pause_version=$(sed -n 's/^TAG ?= *//p' "$(dirname "$pause_c")/../Makefile" | sed -n 1p)
  [ -n "$pause_version" ] || die "no 'TAG ?=' in $(dirname "$pause_c")/../Makefile"
  ensure pause "$(key_of pause "$(sha256sum <"$pause_c")" "$pause_version" \
    "$(declare -f pause_containerfile build_pause)")" build_pause
  img_tag "$(ref_of pause):$tag" "$(ref_of pause):$pause_version"
  built+=("$(ref_of pause):$pause_version")
  keep+=("$(ref_of pause):$pause_version")
fi

# Old build keys of the images handled here, and their old content tags unless --tag was given
# (other tags, e.g. from --tag, stay until that tag is reused).
repos=()
for n in "${selected[@]}"; do repos+=("$(ref_of "$n")"); done
$debootstrap_base && repos+=("$registry/debian-python")
while read -r name t; do
  ref="$name:$t"
  [[ $t =~ ^key-[0-9a-f]{16}$|^$suite-[0-9a-f]{12}$ ]] || { ! $own_tag && [[ $t =~ ^[0-9a-f]{12}$ ]]; } || continue
  ours=false
  for r in "${repos[@]}"; do [ "$r" = "$name" ] && ours=true; done
  $ours || continue
  for k in "${keep[@]}"; do [ "$k" = "$ref" ] && continue 2; done
  img_rmi "$ref"
done < <(img_list)
# Images left without a name (a tag moved away); buildah's store holds nothing but ours.
[ "$builder" = buildah ] && { bh rmi --prune >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------------------------------------
# loading

load_containerd() {
  [ -S "$containerd_address" ] || die "no containerd socket at $containerd_address (set SC_CONTAINERD_ADDRESS)"
  local ref id have file label=serviceconnect.local/image-id
  local c=(ctr --address "$containerd_address" -n k8s.io)
  for ref in "${built[@]}"; do
    # Each import is labelled with the builder's image ID: an image containerd already holds is
    # skipped, or only given the new name when just the tag changed.
    id=$(img_id "$ref")
    [[ $("${c[@]}" images ls "name==$ref") == *"$label=$id"* ]] && continue
    have=$("${c[@]}" images ls -q "labels.\"$label\"==$id" | sed -n 1p)
    if [ -n "$have" ]; then
      "${c[@]}" images tag --force "$have" "$ref" >/dev/null
      log "tagged $ref in containerd (same image as $have)"
    else
      file="$work/image.tar"
      img_save "$ref" "$file"
      "${c[@]}" images import "$file" >/dev/null
      rm -f "$file"
      log "loaded $ref into containerd ($containerd_address, namespace k8s.io)"
    fi
    "${c[@]}" images label "$ref" "$label=$id" >/dev/null
  done
}

load_kind() {
  local ref file
  if [ "$builder" = docker ]; then
    kind load docker-image --name "$kind_cluster" "${built[@]}" >&2
    return
  fi
  for ref in "${built[@]}"; do
    file="$work/image.tar"
    img_save "$ref" "$file"
    kind load image-archive --name "$kind_cluster" "$file" >&2
    rm -f "$file"
  done
}

step
case $load in
  containerd) load_containerd; done_step "load into containerd" ;;
  kind) load_kind; done_step "load into kind ($kind_cluster)" ;;
  none) ;;
esac

for ref in "${built[@]}"; do log "  $ref  $(img_size "$ref")"; done
log "done in $((SECONDS - total_start)) s (${timings[*]/%/;})"
printf '%s\n' "$tag"
