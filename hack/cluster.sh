#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, of the version hack/kube.sh builds.
#
#   hack/cluster.sh up      start it (builds the binaries first if needed) and wait for the node Ready
#   hack/cluster.sh down    stop it and remove everything it made, also after a crash or a failed up
#   hack/cluster.sh env     print shell exports: KUBECONFIG, and where containerd listens
#   hack/cluster.sh status  say whether it runs
#
# What runs (all as root, each a plain process; logs in $SC_CLUSTER_DIR/logs):
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler        the control plane
#   containerd (Debian's, with our config file) + runc + the CNI plugins  the container runtime
#   kubelet (cgroupfs driver), a node registered as sc-node              the node
#   kube-proxy (iptables mode)                                           Services
#   CoreDNS, as a process the kubelet's clusterDNS points at             cluster DNS
# CoreDNS runs as a host process, not a kube-system Deployment: it is up before the first pod and
# needs no image; pods see the same thing (nameserver = the node's bridge address, search
# <ns>.svc.cluster.local ...) and the kubernetes plugin answers from the same API objects.
#
# Network: a bridge (sc-cni0, 10.244.0.1/24) made first; its address is the node IP, the API
# server's address and the DNS address. Pods get 10.244.0.0/24 from the CNI bridge plugin without
# masquerading, and an iptables rule drops anything from the pod network that would leave through
# another interface: pod traffic never leaves this machine. Everything else listens on 127.0.0.1.
# Settings that matter on this kind of machine (cgroup v1, no CAP_SYS_RESOURCE, no systemd) are
# commented where they are made; the reference is docs/cluster.md.
#
# Environment: SC_CLUSTER_DIR (state, default /var/lib/serviceconnect-cluster), SC_CLUSTER_RUN
# (sockets, default /run/serviceconnect-cluster), KUBE_BIN (binaries; default: hack/kube.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

state=${SC_CLUSTER_DIR:-/var/lib/serviceconnect-cluster}
run=${SC_CLUSTER_RUN:-/run/serviceconnect-cluster}
node=sc-node
bridge=sc-cni0
node_ip=10.244.0.1
pod_cidr=10.244.0.0/24
cluster_cidr=10.244.0.0/16
service_cidr=10.96.0.0/16
api_port=6443
etcd_client=http://127.0.0.1:22379
etcd_peer=http://127.0.0.1:22380
containerd_sock="$run/containerd/containerd.sock"
pause_image=serviceconnect.local/pause:3.10.2
# Sysctls the kubelet, the bridge plugin and kube-proxy change; saved at up, restored at down.
sysctls=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables)

log() { printf "cluster: [%3ss] %s\n" "$SECONDS" "$*" >&2; }
die() { log "$*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root (it starts containerd, a kubelet and iptables rules)"; }

kubectl_bin() {
  if [ -n "${SC_TOOLS_DIR:-}" ] && [ -x "$SC_TOOLS_DIR/kubectl" ]; then printf '%s\n' "$SC_TOOLS_DIR/kubectl"
  else printf '%s/kubectl\n' "$("$root/hack/tools.sh")"; fi
}

kc() { "$(kubectl_bin)" --kubeconfig "$state/admin.kubeconfig" "$@"; }

# wait_until DESCRIPTION SECONDS COMMAND...: poll the command every half second.
wait_until() {
  local what=$1 limit=$2 t=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - t)) -ge "$limit" ]; then
      log "timed out after ${limit} s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
  log "$what after $((SECONDS - t)) s"
}

alive() { [ -f "$state/pids/$1" ] && kill -0 "$(cat "$state/pids/$1")" 2>/dev/null; }

# start NAME BINARY ARGS...: run in its own session, log to logs/NAME.log, remember the pid.
start() {
  local name=$1
  shift
  setsid "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$state/pids/$name"
}

# ---------------------------------------------------------------------------------------------------
# certificates: one CA; client certificates whose subject is what the authorizers read.

cert() { # cert NAME SUBJECT [SANS]: a key and a certificate signed by the cluster CA
  local name=$1 subj=$2 sans=${3:-} pki="$state/pki" ext
  ext=$(mktemp)
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$sans"
    else echo "extendedKeyUsage=clientAuth"; fi
  } >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" \
    -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$ext" "$pki/$name.csr"
}

kubeconfig() { # kubeconfig NAME CERT: a kubeconfig for the client certificate CERT
  local file="$state/$1.kubeconfig" pki="$state/pki"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$node_ip:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
EOF
  chmod 600 "$file"
}

make_pki() {
  local pki="$state/pki"
  mkdir -p "$pki"
  chmod 700 "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=serviceconnect-local-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,IP:$node_ip"
  cert kubelet-serving "/CN=$node" "DNS:$node,IP:$node_ip"
  cert admin "/O=system:masters/CN=admin"
  # The API server's client certificate for logs/exec/port-forward on the kubelet.
  cert apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kubelet "/O=system:nodes/CN=system:node:$node"   # what the Node authorizer needs
  cert kube-proxy "/CN=system:kube-proxy"
  cert coredns "/CN=system:serviceconnect-coredns"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  for c in admin controller-manager scheduler kubelet kube-proxy coredns; do kubeconfig "$c" "$c"; done
}

# ---------------------------------------------------------------------------------------------------
# configuration files

write_configs() {
  local cni="$state/cni"
  mkdir -p "$cni/net.d" "$cni/ipam" "$state/containerd" "$run/containerd"
  # cniVersion 0.4.0: what Debian's plugins (1.1) and containerd 1.6 both speak.
  cat >"$cni/net.d/10-serviceconnect.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "serviceconnect",
  "plugins": [
    {"type": "bridge", "bridge": "$bridge", "isGateway": true, "hairpinMode": true, "ipMasq": false,
     "ipam": {"type": "host-local", "dataDir": "$cni/ipam",
              "ranges": [[{"subnet": "$pod_cidr", "gateway": "$node_ip"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
  # containerd: its own root, state and socket, so it never meets another containerd on the machine.
  cat >"$state/containerd/config.toml" <<EOF
version = 2
root = "$state/containerd/root"
state = "$run/containerd/state"
[grpc]
  address = "$containerd_sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # This VM does not grant CAP_SYS_RESOURCE: without this every container with a negative
  # oom_score_adj (the pause container: -998) fails to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cni/net.d"
EOF
  printf '# pods use the cluster DNS only (no resolver of this machine)\n' >"$state/resolv.conf"
  cat >"$state/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$containerd_sock
# No systemd here, and cgroup v1: the kubelet refuses cgroup v1 by default since 1.35.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# No CAP_SYS_RESOURCE: the kubelet cannot give itself -999.
oomScoreAdj: 0
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $state/pki/kubelet-serving.crt
tlsPrivateKeyFile: $state/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $state/pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$node_ip]
resolvConf: $state/resolv.conf
podLogsDir: $state/pod-logs
# Locally imported images cannot be pulled again: never garbage-collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
shutdownGracePeriod: 0s
EOF
  cat >"$state/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $cluster_cidr
hostnameOverride: $node
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$node_ip/32"]
clientConnection: {kubeconfig: $state/kube-proxy.kubeconfig}
# Zeros: leave the conntrack sysctls as they are (this VM does not let them be written).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  cat >"$state/Corefile" <<EOF
.:53 {
    bind $node_ip
    errors
    ready 127.0.0.1:18181
    health 127.0.0.1:18080
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $state/coredns.kubeconfig local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    # No forward: names outside the cluster do not resolve, so pods never reach out of the machine.
    cache 5
    loadbalance
}
EOF
}

# RBAC for CoreDNS's client certificate: what the kubernetes plugin reads.
coredns_rbac() {
  kc apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:serviceconnect-coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:serviceconnect-coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:serviceconnect-coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:serviceconnect-coredns"}
EOF
}

# ---------------------------------------------------------------------------------------------------
# up

ensure_packages() {
  local pkgs=()
  command -v containerd >/dev/null || pkgs+=(containerd)
  command -v runc >/dev/null || pkgs+=(runc)
  [ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins)
  command -v conntrack >/dev/null || pkgs+=(conntrack)
  command -v nft >/dev/null || pkgs+=(nftables)
  command -v iptables >/dev/null || pkgs+=(iptables)
  command -v openssl >/dev/null || pkgs+=(openssl)
  [ "${#pkgs[@]}" -eq 0 ] && return 0
  log "installing Debian packages: ${pkgs[*]}"
  # Installing containerd must not start it as a service on this machine.
  local policy=/usr/sbin/policy-rc.d made=false
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; made=true; fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${pkgs[@]}" >&2
  if $made; then rm -f "$policy"; fi
}

up() {
  need_root
  if alive kube-apiserver; then log "already up"; print_env; return 0; fi
  # Leftovers of a crashed run would get in the way: start from nothing.
  if [ -d "$state" ] || ip link show "$bridge" >/dev/null 2>&1; then down; fi
  local t0=$SECONDS kbin
  ensure_packages
  kbin=${KUBE_BIN:-$("$root/hack/kube.sh")}
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns; do
    [ -x "$kbin/$b" ] || die "$kbin has no $b (hack/kube.sh builds it)"
  done
  mkdir -p "$state"/{logs,pids,etcd,kubelet,pod-logs} "$run"
  printf '%s\n' "$kbin" >"$state/kube-bin"
  nft list tables >"$state/nft-tables.before" 2>/dev/null || true
  : >"$state/sysctl.saved"
  for s in "${sysctls[@]}"; do
    v=$(sysctl -n "$s" 2>/dev/null) && printf '%s=%s\n' "$s" "$v" >>"$state/sysctl.saved"
  done

  log "network: bridge $bridge $node_ip/24, pod traffic kept on this machine"
  modprobe br_netfilter 2>/dev/null || true
  ip link add "$bridge" type bridge
  ip addr add "$node_ip/24" dev "$bridge"
  ip link set "$bridge" up
  iptables -w -I FORWARD -s "$cluster_cidr" ! -o "$bridge" -j DROP -m comment --comment serviceconnect-cluster
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true

  make_pki
  write_configs

  start etcd "$kbin/etcd" --name=default --data-dir="$state/etcd" \
    --listen-client-urls="$etcd_client" --advertise-client-urls="$etcd_client" \
    --listen-peer-urls="$etcd_peer" --initial-advertise-peer-urls="$etcd_peer" \
    --initial-cluster="default=$etcd_peer" --unsafe-no-fsync
  wait_until "etcd healthy" 60 curl -fsS "$etcd_client/health"

  local pki="$state/pki"
  start kube-apiserver "$kbin/kube-apiserver" --etcd-servers="$etcd_client" \
    --bind-address="$node_ip" --advertise-address="$node_ip" --secure-port="$api_port" \
    --cert-dir="$state/apiserver-certs" --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" --client-ca-file="$pki/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range="$service_cidr" --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction --allow-privileged=true \
    --kubelet-client-certificate="$pki/apiserver-kubelet.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet.key" \
    --kubelet-preferred-address-types=InternalIP --profiling=false --v=1
  wait_until "kube-apiserver ready" 120 curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
    --key "$pki/admin.key" "https://$node_ip:$api_port/readyz"

  start kube-controller-manager "$kbin/kube-controller-manager" \
    --kubeconfig="$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$state/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$state/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --allocate-node-cidrs --cluster-cidr="$cluster_cidr" \
    --node-cidr-mask-size=24 --service-cluster-ip-range="$service_cidr" \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" --leader-elect=false --profiling=false --v=1
  start kube-scheduler "$kbin/kube-scheduler" --kubeconfig="$state/scheduler.kubeconfig" \
    --authentication-kubeconfig="$state/scheduler.kubeconfig" \
    --authorization-kubeconfig="$state/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false --v=1

  start containerd containerd --config "$state/containerd/config.toml"
  wait_until "containerd serving" 60 ctr --address "$containerd_sock" version
  load_pause

  start kubelet "$kbin/kubelet" --config="$state/kubelet.yaml" \
    --kubeconfig="$state/kubelet.kubeconfig" --root-dir="$state/kubelet" \
    --cert-dir="$state/kubelet/pki" --node-ip="$node_ip" --hostname-override="$node" --v=1
  start kube-proxy "$kbin/kube-proxy" --config="$state/kube-proxy.yaml" --v=1
  coredns_rbac
  start coredns "$kbin/coredns" -conf "$state/Corefile"

  wait_until "node $node Ready" 180 node_ready || { tail -n 30 "$state/logs/kubelet.log" >&2; exit 1; }
  wait_until "CoreDNS ready" 60 curl -fsS http://127.0.0.1:18181/ready
  wait_until "default service account" 60 kc get serviceaccount default -n default
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns; do
    alive "$p" || die "$p exited; see $state/logs/$p.log"
  done
  log "up in $((SECONDS - t0)) s: Kubernetes $("$kbin/kube-apiserver" --version | cut -d' ' -f2), node $node"
  print_env
}

node_ready() {
  kc get node "$node" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

# The sandbox (pause) image: built from Kubernetes' pause.c by hack/build-images.sh, never pulled.
load_pause() {
  SC_CONTAINERD_ADDRESS=$containerd_sock "$root/hack/build-images.sh" --only pause --tag "${pause_image##*:}" --load containerd >/dev/null
  local have
  have=$(ctr --address "$containerd_sock" -n k8s.io images ls -q)
  grep -qx "$pause_image" <<<"$have" \
    || die "the pause image $pause_image is not in containerd after hack/build-images.sh --only pause"
}

print_env() {
  printf 'export KUBECONFIG=%s\n' "$state/admin.kubeconfig"
  printf 'export SC_CONTAINERD_ADDRESS=%s\n' "$containerd_sock"
  printf 'export CONTAINER_RUNTIME_ENDPOINT=unix://%s\n' "$containerd_sock"
}

# ---------------------------------------------------------------------------------------------------
# down: safe to run at any time, in any state; leaves the machine as it was before up.

stop_pid() { # stop_pid NAME: SIGTERM, then SIGKILL after 10 s
  local f="$state/pids/$1" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

down() {
  need_root
  local kbin=""
  [ -f "$state/kube-bin" ] && kbin=$(cat "$state/kube-bin")
  log "down: stopping the node"
  # The kubelet first, so it does not restart what is being removed; then every pod sandbox through
  # containerd, which runs the CNI DEL that gives back addresses and removes veths and portmaps.
  stop_pid kubelet
  if [ -S "$containerd_sock" ] && command -v ctr >/dev/null; then
    local crictl=""
    [ -n "$kbin" ] && [ -x "$kbin/crictl" ] && crictl="$kbin/crictl"
    if [ -n "$crictl" ]; then
      timeout 120 "$crictl" --runtime-endpoint "unix://$containerd_sock" rmp -fa >/dev/null 2>&1 || true
    fi
  fi
  stop_pid kube-proxy
  if [ -n "$kbin" ] && [ -x "$kbin/kube-proxy" ]; then
    "$kbin/kube-proxy" --cleanup --v=0 >/dev/null 2>&1 || true
  fi
  for p in coredns kube-scheduler kube-controller-manager kube-apiserver containerd etcd; do stop_pid "$p"; done
  # Whatever a crash left: shims of our containerd, then any process that names our state directory
  # (each of ours does, in a flag). Never by binary: the integration tests run the same binaries.
  pkill -9 -f "containerd-shim-runc-v2 .*-address $containerd_sock" 2>/dev/null || true
  pkill -9 -f -- "$state/" 2>/dev/null || true

  # Mounts under our directories and the CNI network namespaces, deepest first.
  local m
  for m in $(awk '{print $2}' /proc/mounts | grep -E "^($state|$run|/run/netns/cni-)" | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -f /run/netns/cni-* 2>/dev/null || true

  # iptables: our FORWARD rule, then every chain the kubelet, kube-proxy and the CNI plugins made.
  while iptables -w -D FORWARD -s "$cluster_cidr" ! -o "$bridge" -j DROP -m comment --comment serviceconnect-cluster 2>/dev/null; do :; done
  clean_chains iptables
  clean_chains ip6tables
  # nft tables the kubelet made (it creates "ip mangle" and "ip6 mangle" for its canary chains, which
  # iptables-nft cannot drop): every table that was not there before up.
  if command -v nft >/dev/null && [ -f "$state/nft-tables.before" ]; then
    local fam tbl
    while read -r _ fam tbl; do
      grep -qx "table $fam $tbl" "$state/nft-tables.before" || nft delete table "$fam" "$tbl" 2>/dev/null || true
    done < <(nft list tables 2>/dev/null)
  fi
  ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge"
  local v
  for v in $(ip -o link show type veth 2>/dev/null | awk -F'[ :@]+' '{print $2}'); do
    [ "$(cat "/sys/class/net/$v/master/uevent" 2>/dev/null | sed -n 's/^INTERFACE=//p')" = "$bridge" ] && ip link delete "$v"
  done

  # cgroups the kubelet made (kubepods in every hierarchy), deepest first.
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done

  if [ -f "$state/sysctl.saved" ]; then
    while IFS='=' read -r k v; do sysctl -qw "$k=$v" 2>/dev/null || true; done <"$state/sysctl.saved"
  fi
  rm -rf "$state" "$run"
  rm -rf /run/containerd/s 2>/dev/null || true  # shim sockets containerd 1.6 keeps in a fixed place
  log "down: nothing left"
}

clean_chains() { # clean_chains iptables|ip6tables: flush and delete KUBE-*/CNI-* in every table
  local ipt=$1 table chains c
  command -v "$ipt" >/dev/null || return 0
  for table in filter nat mangle raw; do
    chains=$("$ipt" -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ {print $2}') || continue
    [ -n "$chains" ] || continue
    # Rules in built-in chains that jump to ours go first.
    "$ipt" -w -t "$table" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j (KUBE-|CNI-)' \
      | while read -r line; do
          # eval: iptables -S quotes comments, and the rule must be given back word for word.
          eval "\"\$ipt\" -w -t \"\$table\" ${line/-A /-D }" 2>/dev/null || true
        done || true
    for c in $chains; do "$ipt" -w -t "$table" -F "$c" 2>/dev/null || true; done
    for c in $chains; do "$ipt" -w -t "$table" -X "$c" 2>/dev/null || true; done
  done
}

status() {
  if alive kube-apiserver && node_ready; then
    log "up: node $node Ready; Kubernetes $(kc get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')"
  else
    log "not running"
    return 1
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) [ -f "$state/admin.kubeconfig" ] || die "not up (hack/cluster.sh up)"; print_env ;;
  status) status ;;
  *) printf 'usage: %s up|down|env|status\n' "$0" >&2; exit 2 ;;
esac
