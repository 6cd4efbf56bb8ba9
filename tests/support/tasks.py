"""Run what the operator rendered, for real: each pod a network namespace with its proxy, rules and app.

The envtest cluster has an API server, etcd and kube-controller-manager but no nodes. This module plays the
two parts that are missing — the kubelet and pod networking — and nothing else; everything else is the
operator's real output read back from the API server:

- **Pod networking.** :class:`Network` creates a *hub* network namespace holding a bridge; every task
  (pod) is a namespace joined to the bridge by a veth pair and given a link-local address (169.254.X.Y/16)
  assigned inside its own namespace. Nothing is created in the machine's root namespace and there is no
  default route, so no packet can leave the machine or touch its real interfaces.
- **Cluster DNS.** A real DNS server (:class:`support.dnsserver.LocalDns`) runs on the hub's address
  :data:`HUB_ADDRESS` port 53 (a task namespace cannot reach the root namespace's loopback). It answers
  like CoreDNS for headless Services: A records with the podIPs of the Ready pods the Service selects, SRV
  records with the port its ``targetPort`` names in each pod (the endpoints controller's computation,
  done here because it refuses link-local pod addresses). Pass :attr:`Network.resolver` to the operator
  as ``SC_DNS_RESOLVER`` so the rendered proxy configuration points at it.
- **The kubelet.** :class:`Harness` starts a task for every pod of a ConnectService, from the pod's own
  spec: ``/etc/netns/NAME/hosts`` written from ``hostAliases`` (``ip netns exec`` bind-mounts it over
  /etc/hosts), the ConfigMap the pod mounts read from the API server and written to a file, the interception
  init container's command run first (real iptables), the proxy started with the container's command, args,
  env and ``runAsUser``, its postStart hook (``sc-proxy wait-ready``) run to completion, then the app
  containers on their containerPorts. When the proxy's readinessProbe (``/ready`` on the pod address, probed
  from the hub as a kubelet probes from its node) passes and the app ports accept connections, the pod is
  marked Ready with its podIP through the status subresource.

Only one in-pod path is rewritten: the config mount path (``/etc/serviceconnect/…``) in the containers'
argv becomes the file's path here, because the host has no such directory and we create nothing in the
host's /etc. The proxy's other volumes — the TLS Secret and CA bundle ConfigMap the operator renders, at
absolute paths under :data:`VOLUME_ROOT` that the proxy configuration names — are *mounted*, standing in
for the kubelet's volume mounts: their files are written from the API objects into a per-task directory,
and the proxy is started in its own mount namespace (``unshare --mount``) in which that directory is
bind-mounted read-only over ``/var/run/serviceconnect``, so every task's proxy sees its own files at the
rendered paths and the configuration is used unchanged. The only mark left on the host is the empty
mount point ``/run/serviceconnect`` (created when missing, on a tmpfs). Files are written once, at start:
the kubelet's in-place refresh of changed Secrets is not simulated.

Executables named without a path (``sc-proxy``) are looked up in this virtualenv first, as the image's
PATH would find them.

Apps: a container whose image mentions ``nginx`` runs Debian's nginx (``X-Served-By: <pod>`` header, page
``Welcome to nginx!``); any other container with ports runs ``python -m support.upstreams`` (JSON answers
naming the pod) on each containerPort, bound to 0.0.0.0; containers without ports run nothing (drive
traffic with :meth:`Task.run`). Override per container name with ``Harness.apps[name] = factory``, where
``factory(AppContext) -> argv`` (one process per containerPort; ``AppContext.port`` is None for a
container without ports, and a factory may return ``[]`` to run nothing).

Public API (import with ``tests/`` on ``sys.path``; no pytest needed)::

    net = Network(workdir)                      # hub namespace, bridge, DNS; net.resolver = "169.254.0.1:53"
    harness = Harness(kube, net, "k8s-ns", workdir)  # kubelet + CoreDNS for one Kubernetes namespace
    tasks = harness.run_pods("nginx-svc")        # wait for the Deployment's pods, run each, mark it Ready
    tasks = harness.run_pods("svc", count=2)     # after a scale-out: wait for (at least) 2 running tasks
    harness.sync("svc")                          # start tasks for new pods, stop those of deleted pods
    harness.wait_dns("nginx", 2)                 # until DNS answers 2 addresses for that discoveryName
    harness.dns_addresses("nginx")               # what DNS answers now
    harness.kill(task)                           # SIGKILL every process of the task (a crash); pod NotReady
    harness.kill(task, report=False)             # …and the kubelet does not notice (DNS keeps the address)
    harness.stop(task)                           # SIGTERM (graceful drain), then pod NotReady
    harness.set_ready(task, False)               # what the kubelet reports for the pod
    task.run("curl", "-s", "http://nginx:80/")   # run a command in the task's namespace (CompletedProcess)
    task.curl("http://nginx:80/", "-i")          # curl -sS --max-time 10 …, never raises
    task.metrics()                               # the proxy's /metrics parsed: {'Name{labels}': value}
    task.admin("/config")                        # (status, body) of a GET on the proxy's loopback admin port
    task.address, task.pod, task.netns, task.config, task.log("sc-proxy")
    harness.close(); net.close()                 # always, in finalizers: processes, namespaces, files

    body = connect_service("web", "k8s-ns", "cns", port=80, container_port=8080)  # a ConnectService body
    apply_accepted(kube, body)                   # create (or patch the spec), wait for Accepted=True
    scale(kube, "k8s-ns", "web", 2)              # desiredCount only: no new rollout

After a redeploy (a new ConnectDeployment), ``sync``/``run_pods`` start the new pods' tasks from the new
ConfigMap and stop the tasks of the pods the Deployment deleted. Each pod's namespace also gets a
``resolv.conf`` naming the hub DNS with the pod's search path, so nothing resolves through the host.
Namespaces are named ``sc-wp-p<PID>-…`` (unless a tag is given); ``Network()`` first removes those left by
a run that was killed outright (:func:`sweep_stale`).

Requires root, ``ip`` (iproute2), ``iptables``, ``setpriv`` and ``curl`` (and nginx for nginx images);
:func:`missing_prerequisites` says what is missing.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import functools
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sc_operator import API_VERSION
from sc_operator.kube import (
    CONFIGMAPS,
    CONNECT_NAMESPACES,
    CONNECT_SERVICES,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    SERVICES,
    ApiError,
    Kube,
    Resource,
)
from support.dnsserver import LocalDns
from support.proxy import parse_metrics

T = TypeVar("T")

TESTS_DIR = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
#: The hub's bridge address; the DNS server listens here on port 53.
HUB_ADDRESS = "169.254.0.1"
DNS_PORT = 53
PREFIX_LEN = 16
CLUSTER_DOMAIN = "cluster.local"
SERVICE_LABEL = "serviceconnect.dev/service"
CONFIG_VOLUME = "sc-proxy-config"
#: Where the proxy's Secret and ConfigMap volumes are mounted (see the module docstring).
VOLUME_ROOT = "/var/run/serviceconnect"
#: Where the ServiceAccount admission plugin mounts the pod's API token (a Secret volume before 1.21).
SERVICE_ACCOUNT_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
SECRETS = Resource("", "v1", "secrets")
PROXY_CONTAINER = "sc-proxy"
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices")

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class HarnessError(AssertionError):
    """The harness could not run what was rendered (the message says which pod and which step)."""


def missing_prerequisites() -> str | None:
    """Why tasks cannot run here (not root, a tool missing), or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "iptables", "setpriv", "curl", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"needs {tool} on PATH"
    return None


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` in a fresh thread switched into network namespace ``netns``.

    setns(2) moves only the calling thread, so the rest of the process stays where it is; sockets ``fn``
    creates belong to ``netns`` for good, whichever thread uses them later.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Remove what a killed run left behind (its finalizers never ran): namespaces named
    ``sc-wp-p<PID>-…`` and config directories ``sc-wp-config-p<PID>-…`` whose creating process is gone,
    with the processes still running inside those namespaces. Returns the namespaces removed."""
    removed = []
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        name = line.split(" ", 1)[0]
        match = _STALE.match(name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        pids = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        ).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", name, check=False)
        shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
        removed.append(name)
    for path in Path(tempfile.gettempdir()).glob("sc-wp-config-p*-*"):
        match = _STALE_CONFIG.match(path.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
    return removed


_STALE = re.compile(r"^sc-wp-p(\d+)-")
_STALE_CONFIG = re.compile(r"^sc-wp-config-p(\d+)-")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise HarnessError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def http_get(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """A plain HTTP/1.1 GET (no proxy settings apply), in whatever namespace the calling thread is."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


class Network:
    """The hub namespace (bridge + DNS server) that task namespaces plug into."""

    def __init__(self, workdir: Path, tag: str | None = None, subnet: str = "169.254") -> None:
        """``subnet``: the first two octets of the /16 the hub and the tasks get (link-local by default;
        a second network for another "cluster" takes another, e.g. 198.18 and 198.19: EndpointSlices
        refuse link-local addresses, and :meth:`route_to` routes between the two)."""
        sweep_stale()
        self.subnet = subnet
        self.hub_address = HUB_ADDRESS if subnet == "169.254" else f"{subnet}.0.1"
        self._routes: list[str] = []
        # The creator's PID in the name lets a later run clean up after a run that was killed outright.
        self.tag = tag or f"p{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.workdir = workdir
        self.hub = f"sc-wp-{self.tag}-hub"
        self._next = 0
        self._lock = threading.Lock()
        self._namespaces: list[str] = []
        self.dns: LocalDns | None = None
        try:
            self._add_netns(self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "addr", "add", f"{self.hub_address}/{PREFIX_LEN}", "dev", "br0")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            self.dns = in_netns(self.hub, lambda: LocalDns(self.hub_address, DNS_PORT))
        except BaseException:
            self.close()
            raise

    @property
    def resolver(self) -> str:
        """``address:port`` of the DNS server, for the operator's ``SC_DNS_RESOLVER``."""
        return f"{self.hub_address}:{DNS_PORT}"

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def plug(self, label: str) -> tuple[str, str]:
        """A new task namespace joined to the bridge: returns (namespace name, address)."""
        with self._lock:
            self._next += 1
            n = self._next
        if n > 250 * 250:
            raise HarnessError("out of task addresses")
        address = f"{self.subnet}.{1 + n // 250}.{1 + n % 250}"
        # The network's own counter in the name: harnesses come and go on one network (a test each), and
        # a name used again would share /etc/netns files with a namespace being torn down.
        name = f"sc-wp-{self.tag}-{n}-{label}"[:60]
        self._add_netns(name)
        veth = f"v{n}"
        # Both ends are created directly in their namespaces: the root namespace never sees them.
        _ip("-n", self.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("-n", self.hub, "link", "set", veth, "master", "br0", "up")
        _ip("-n", name, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        for subnet in self._routes:
            _ip("-n", name, "route", "add", subnet, "via", self.hub_address)
        return name, address

    def attach(self, netns: str) -> str:
        """Join an existing namespace (one plugged into another network: a gateway at the edge of two
        clusters) to this bridge as a second interface, ``x<n>``, without routes; returns its address."""
        with self._lock:
            self._next += 1
            n = self._next
        address = f"{self.subnet}.{1 + n // 250}.{1 + n % 250}"
        veth, dev = f"v{n}", f"x{n}"
        _ip("-n", self.hub, "link", "add", veth, "type", "veth", "peer", "name", dev, "netns", netns)
        _ip("-n", self.hub, "link", "set", veth, "master", "br0", "up")
        _ip("-n", netns, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", dev)
        _ip("-n", netns, "link", "set", dev, "up")
        return address

    def route_to(self, other: Network) -> None:
        """Route between this network's tasks and ``other``'s (two clusters' pod networks, peered: "flat").

        A veth pair joins the two hubs (192.0.2.0/30, TEST-NET-1), each hub forwards, and every task plugged
        in afterwards gets a route to the other /16 through its hub. Both hubs stay off the root namespace.
        """
        ends = ((self, "xa", "192.0.2.1", other, "192.0.2.2"), (other, "xb", "192.0.2.2", self, "192.0.2.1"))
        _ip("-n", self.hub, "link", "add", "xa", "type", "veth", "peer", "name", "xb", "netns", other.hub)
        for net, dev, address, peer, peer_address in ends:
            _ip("-n", net.hub, "addr", "add", f"{address}/30", "dev", dev)
            _ip("-n", net.hub, "link", "set", dev, "up")
            _ip("-n", net.hub, "route", "add", f"{peer.subnet}.0.0/{PREFIX_LEN}", "via", peer_address)
            subprocess.run(
                ["ip", "netns", "exec", net.hub, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                check=True,
                capture_output=True,
            )
            net._routes.append(f"{peer.subnet}.0.0/{PREFIX_LEN}")

    def unplug(self, name: str) -> None:
        """Delete a task namespace (its veth pair goes with it) and its /etc/netns files."""
        _ip("netns", "del", name, check=False)
        shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
        with contextlib.suppress(ValueError):
            self._namespaces.remove(name)

    def close(self) -> None:
        if self.dns is not None:
            self.dns.close()
            self.dns = None
        for name in reversed(list(self._namespaces)):
            self.unplug(name)


@dataclass
class AppContext:
    """What an app factory gets: the task, the container (pod spec dict) and one of its ports."""

    task: Task
    container: dict[str, Any]
    port: int | None


AppFactory = Callable[[AppContext], list[str]]


@dataclass
class Task:
    """One running pod: its network namespace, address, processes and proxy configuration."""

    pod: str
    service: str
    netns: str
    address: str
    workdir: Path
    config: dict[str, Any]
    admin_port: int
    uid: str
    procs: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    alive: bool = True
    #: The loopback admin listener (/config, POST /drain, and everything else); ``admin_port`` is the stats
    #: & health listener the kubelet probes.
    local_admin_port: int = 9902

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *cmd]

    def run(
        self, *cmd: str, timeout: float = 30.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the task (as its app containers would); never raises on exit status."""
        return subprocess.run(
            self.argv(*cmd), capture_output=True, text=True, timeout=timeout, check=False, input=input
        )

    def curl(self, url: str, *opts: str, max_time: float = 10.0) -> subprocess.CompletedProcess[str]:
        """``curl -sS --max-time N [opts] url`` inside the task."""
        return self.run("curl", "-sS", "--max-time", str(max_time), *opts, url, timeout=max_time + 20)

    def admin(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET on the proxy's loopback admin port (every admin path), from inside the task."""
        return in_netns(self.netns, lambda: http_get("127.0.0.1", self.local_admin_port, path, timeout))

    def metrics(self) -> dict[str, float]:
        """The proxy's Prometheus metrics, ``{'Name{label="v"}': value}``."""
        status, body = self.admin("/metrics")
        if status != 200:
            raise HarnessError(f"{self.pod}: /metrics answered {status}")
        return parse_metrics(body)

    def log(self, container: str) -> str:
        """Everything a container (or ``sc-intercept``) wrote so far."""
        path = self.workdir / f"{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def signal(self, sig: int) -> None:
        for procs in self.procs.values():
            for proc in procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, sig)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for procs in self.procs.values():
            for proc in procs:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


def _default_app(ctx: AppContext) -> list[str]:
    if ctx.port is None:
        return []
    image = str(ctx.container.get("image", ""))
    if "nginx" in image:
        return _nginx(ctx.task, ctx.port)
    return [
        sys.executable,
        "-m",
        "support.upstreams",
        "--name",
        ctx.task.pod,
        "--listen",
        f"0.0.0.0:{ctx.port}",
    ]


def _nginx(task: Task, port: int) -> list[str]:
    if shutil.which("nginx") is None:
        raise HarnessError(f"{task.pod}: an nginx image needs Debian's nginx on PATH (apt-get install nginx)")
    root = task.workdir / f"nginx-{port}"
    (root / "www").mkdir(parents=True, exist_ok=True)
    (root / "www" / "index.html").write_text(
        "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
        f"<body><h1>Welcome to nginx!</h1><p>{task.pod}</p></body></html>\n"
    )
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
user root;
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root};
    proxy_temp_path {root};
    fastcgi_temp_path {root};
    uwsgi_temp_path {root};
    scgi_temp_path {root};
    server {{
        listen 0.0.0.0:{port};
        root {root}/www;
        add_header X-Served-By {task.pod};
    }}
}}
"""
    )
    return ["nginx", "-c", str(conf), "-p", str(root)]


def _executable(name: str) -> str:
    if "/" in name:
        return name
    found = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return found or name


def _command(container: dict[str, Any], mount: str, local_dir: Path) -> list[str]:
    argv = [*container.get("command", []), *container.get("args", [])]
    if not argv:
        raise HarnessError(f"container {container['name']} has no command (the image's default is unknown)")
    out = [_executable(argv[0])]
    for arg in argv[1:]:
        # The one in-pod path we must rewrite: where the ConfigMap is mounted (see the module docstring).
        out.append(str(local_dir) + arg[len(mount) :] if arg.startswith(mount + "/") else arg)
    return out


def _env(container: dict[str, Any], pod: dict[str, Any], address: str) -> dict[str, str]:
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        "PYTHONPATH": str(TESTS_DIR),
        "HOME": "/",
        "HOSTNAME": pod["metadata"]["name"],
    }
    fields = {
        "status.podIP": address,
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
    }
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif (ref := item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")) in fields:
            env[item["name"]] = fields[ref]
    return env


def _hosts(pod: dict[str, Any], address: str) -> str:
    # What the kubelet writes into a pod's /etc/hosts.
    lines = [
        "# Kubernetes-managed hosts file (written by the test harness, standing in for the kubelet).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{address}\t{pod['metadata']['name']}",
    ]
    aliases = pod["spec"].get("hostAliases") or []
    if aliases:
        lines.append("\n# Entries added by HostAliases.")
        lines += [f"{a['ip']}\t{chr(9).join(a['hostnames'])}" for a in aliases]
    return "\n".join(lines) + "\n"


def _resolv_conf(namespace: str, nameserver: str = HUB_ADDRESS) -> str:
    return (
        f"nameserver {nameserver}\n"
        f"search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n"
        "options ndots:5\n"
    )


def _target_port(pod: dict[str, Any], port: dict[str, Any]) -> int | None:
    """A Service port's targetPort in one pod: a number, or the pod's container port of that name."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    # As the controllers' FindPort: the containers, then the native sidecars (restartPolicy: Always).
    sidecars = [c for c in pod["spec"].get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for container in [*pod["spec"]["containers"], *sidecars]:
        for p in container.get("ports") or []:
            if p.get("name") == target:
                return int(p["containerPort"])
    return None


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _wait(what: str, check: Callable[[], T | None], timeout: float, step: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (ApiError, OSError, KeyError) as exc:
            last = exc
        else:
            last = value
            if value:
                return value
        time.sleep(step)
    raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def _port_open(netns: str, port: int) -> bool:
    def probe() -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    return in_netns(netns, probe)


class Harness:
    """The kubelet and CoreDNS for one Kubernetes namespace (see the module docstring)."""

    def __init__(
        self,
        kube: Kube,
        network: Network,
        namespace: str,
        workdir: Path,
        apps: Mapping[str, AppFactory] | None = None,
        dns_interval: float = 0.5,
    ) -> None:
        self.kube = kube
        self.network = network
        self.namespace = namespace
        self.workdir = workdir
        self.apps: dict[str, AppFactory] = dict(apps or {})
        self.tasks: dict[str, Task] = {}  # by pod name
        self._count = 0
        # Proxies run as the rendered runAsUser (non-root); the config must be readable for it, which
        # pytest's private (0700) temporary directories are not.
        self._config_root = Path(tempfile.mkdtemp(prefix=f"sc-wp-config-p{os.getpid()}-"))
        self._config_root.chmod(0o755)
        self._dns_names: set[str] = set()
        self._stop = threading.Event()
        self._dns_error: BaseException | None = None
        self._dns_thread = threading.Thread(
            target=self._dns_loop, args=(dns_interval,), name="wp-dns", daemon=True
        )
        self._dns_thread.start()

    # -- the kubelet --------------------------------------------------------------------------------------

    def pods(self, service: str) -> list[dict[str, Any]]:
        """The live (not terminating) pods of a ConnectService."""
        return [
            p
            for p in self.kube.list(PODS, self.namespace, {SERVICE_LABEL: service})
            if not p["metadata"].get("deletionTimestamp")
        ]

    def sync(self, service: str) -> list[Task]:
        """Start a task for each new pod of ``service``, stop those whose pod is gone; the running tasks."""
        pods = {p["metadata"]["name"]: p for p in self.pods(service)}
        for name, task in list(self.tasks.items()):
            if task.service == service and name not in pods:
                self._terminate(task, graceful=True)
        for name, pod in sorted(pods.items()):
            if name not in self.tasks:
                self.start_pod(pod)
        return [t for t in self.tasks.values() if t.service == service and t.alive]

    def run_pods(self, service: str, count: int | None = None, timeout: float = 90.0) -> list[Task]:
        """Wait for ``count`` pods (default: the Deployment's replicas), run them all, mark them Ready."""
        if count is None:
            deployment = _wait(
                f"Deployment {service}",
                lambda: self.kube.get_or_none(DEPLOYMENTS, service, self.namespace),
                timeout,
            )
            count = int(deployment["spec"].get("replicas", 1))
        want = count

        def enough() -> list[Task] | None:
            tasks = self.sync(service)
            return tasks if len(tasks) >= want else None

        return _wait(f"{want} running task(s) of {service}", enough, timeout, step=0.3)

    def start_pod(self, pod: dict[str, Any], ready_timeout: float = 60.0) -> Task:
        """Run one pod as a task: init container, proxy (+ postStart), apps; then mark it Ready."""
        name = pod["metadata"]["name"]
        self._count += 1
        netns, address = self.network.plug(f"t{self._count}")
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        task = Task(
            pod=name,
            service=pod["metadata"]["labels"].get(SERVICE_LABEL, ""),
            netns=netns,
            address=address,
            workdir=workdir,
            config={},
            admin_port=0,
            uid=pod["metadata"]["uid"],
        )
        self.tasks[name] = task
        try:
            self._start(task, pod, ready_timeout)
        except BaseException:
            self._terminate(task, graceful=False)
            raise
        return task

    def _config(self, pod: dict[str, Any], task: Task) -> tuple[str, Path]:
        """Write the mounted ConfigMap's files; returns (mount path, local directory)."""
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == CONFIG_VOLUME)
        cm = self.kube.get(CONFIGMAPS, volume["configMap"]["name"], self.namespace)
        local = self._config_root / task.pod
        local.mkdir(mode=0o755)
        items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in cm["data"]]
        for item in items:
            target = local / item["path"]
            target.write_text(cm["data"][item["key"]])
            target.chmod(0o644)
        # A native sidecar (API server >= 1.29) is an init container; the start-up gate's proxy a container.
        proxy = next(
            c
            for c in [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]
            if c["name"] == PROXY_CONTAINER
        )
        mount = next(m["mountPath"] for m in proxy["volumeMounts"] if m["name"] == CONFIG_VOLUME)
        first = local / items[0]["path"]
        task.config = json.loads(first.read_text())
        task.admin_port = int(task.config["admin"]["port"])
        task.local_admin_port = int(task.config["admin"].get("localPort", task.local_admin_port))
        return mount, local

    def _volumes(self, pod: dict[str, Any], task: Task, container: dict[str, Any]) -> Path | None:
        """Write the files of ``container``'s Secret and ConfigMap volumes (other than the proxy config)
        into a per-task tree mirroring :data:`VOLUME_ROOT`; None when it mounts none. As the kubelet, wait
        for a volume's object to exist (the operator writes the leaf Secret before the Deployment, but a
        CA bundle copy may follow)."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        # Other volumes (the emptyDir at /tmp) stay the host's: tasks share it harmlessly. So does the
        # ServiceAccount token that older API servers' admission mounts as a Secret: nothing here reads it.
        mounts = [
            m
            for m in container.get("volumeMounts") or []
            if m["name"] != CONFIG_VOLUME
            and m["mountPath"].rstrip("/") != SERVICE_ACCOUNT_TOKEN_PATH
            and {"secret", "configMap"} & volumes[m["name"]].keys()
        ]
        if not mounts:
            return None
        root = self._config_root / task.pod / "volumes"
        for mount in mounts:
            path = mount["mountPath"].rstrip("/")
            if not path.startswith(VOLUME_ROOT + "/"):
                raise HarnessError(f"{task.pod}: volume mount {path} is outside {VOLUME_ROOT}: not simulated")
            volume = volumes[mount["name"]]
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                obj = _wait(
                    f"Secret {name}",
                    functools.partial(self.kube.get_or_none, SECRETS, name, self.namespace),
                    60,
                )
                data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
                source = volume["secret"]
            else:
                name = volume["configMap"]["name"]
                obj = _wait(
                    f"ConfigMap {name}",
                    functools.partial(self.kube.get_or_none, CONFIGMAPS, name, self.namespace),
                    60,
                )
                data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
                source = volume["configMap"]
            target = root / path[len(VOLUME_ROOT) + 1 :]
            target.mkdir(parents=True, exist_ok=True)
            for parent in [target, *target.parents]:
                if parent == self._config_root:
                    break
                parent.chmod(0o755)
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                file = target / item["path"]
                file.write_bytes(data[item["key"]])
                file.chmod(int(item.get("mode", source.get("defaultMode", 0o644))))
        return root

    def _spawn(
        self,
        task: Task,
        container: dict[str, Any],
        argv: list[str],
        pod: dict[str, Any],
        volumes: Path | None = None,
    ) -> None:
        uid = (container.get("securityContext") or {}).get("runAsUser")
        if uid:  # the proxy: non-root, as rendered
            gid = (container.get("securityContext") or {}).get("runAsGroup", uid)
            argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]
        if volumes is not None:
            # The kubelet's volume mounts: this container's own mount namespace, the task's files over
            # VOLUME_ROOT (read-only), mounted as root before the container's user takes over.
            Path(VOLUME_ROOT).mkdir(mode=0o755, exist_ok=True)
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                'mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && shift 2 && exec "$@"',
                "sh",
                str(volumes),
                VOLUME_ROOT,
                *argv,
            ]
        with (task.workdir / f"{container['name']}.log").open("ab") as out:
            proc = subprocess.Popen(
                task.argv(*argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(container, pod, task.address),
                start_new_session=True,  # one process group per container: kill takes its children too
            )
        task.procs.setdefault(container["name"], []).append(proc)

    def _startup_probe(self, task: Task, container: dict[str, Any]) -> None:
        """Wait until ``container``'s httpGet startup probe answers 200, as long as the kubelet would."""
        probe = container.get("startupProbe") or {}
        get = probe.get("httpGet")
        if not get:
            return
        name = container["name"]
        port, path = int(get["port"]), get.get("path", "/")

        def passed() -> bool:
            for proc in task.procs.get(name, []):
                if proc.poll() is not None:
                    raise HarnessError(f"{task.pod}: {name} exited {proc.returncode}:\n{task.log(name)}")
            status, _ = in_netns(self.network.hub, lambda: http_get(task.address, port, path, timeout=1))
            return status == 200

        limit = int(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))
        _wait(f"{task.pod}: startup probe of {name}", passed, float(limit), step=0.2)

    def _start(self, task: Task, pod: dict[str, Any], ready_timeout: float) -> None:
        spec = pod["spec"]
        etc = Path("/etc/netns") / task.netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(_hosts(pod, task.address))
        (etc / "resolv.conf").write_text(_resolv_conf(self.namespace, self.network.hub_address))
        mount, local = self._config(pod, task)

        for init in spec.get("initContainers") or []:
            argv = _command(init, mount, local)
            if init.get("restartPolicy") == "Always":  # a native sidecar (API server >= 1.29)
                self._spawn(task, init, argv, pod, self._volumes(pod, task, init))
                # The kubelet starts the next container only once the sidecar's startup probe passed.
                self._startup_probe(task, init)
                continue
            result = task.run(*argv, timeout=60)
            (task.workdir / f"{init['name']}.log").write_text(result.stdout + result.stderr)
            if result.returncode != 0:
                raise HarnessError(
                    f"{task.pod}: init container {init['name']} exited {result.returncode}: "
                    f"{result.stderr.strip()}"
                )
        for container in spec["containers"]:
            if container["name"] == PROXY_CONTAINER:
                volumes = self._volumes(pod, task, container)
                self._spawn(task, container, _command(container, mount, local), pod, volumes)
                hook = ((container.get("lifecycle") or {}).get("postStart") or {}).get("exec")
                if hook:  # the kubelet runs postStart to completion before the next container starts
                    result = task.run(
                        *_command({"name": "postStart", "command": hook["command"]}, mount, local)
                    )
                    if result.returncode != 0:
                        raise HarnessError(
                            f"{task.pod}: postStart of {PROXY_CONTAINER} exited {result.returncode}: "
                            f"{result.stderr.strip()}\n{task.log(PROXY_CONTAINER)}"
                        )
                continue
            factory = self.apps.get(container["name"], _default_app)
            ports: list[int | None] = [int(p["containerPort"]) for p in container.get("ports") or []]
            for port in ports or [None]:
                argv = factory(AppContext(task, container, port))
                if argv:
                    self._spawn(task, container, argv, pod)

        def ready() -> bool:
            for name, procs in task.procs.items():
                for proc in procs:
                    if proc.poll() is not None:
                        raise HarnessError(f"{task.pod}: {name} exited {proc.returncode}:\n{task.log(name)}")
            status, _ = in_netns(
                self.network.hub, lambda: http_get(task.address, task.admin_port, "/ready", timeout=2)
            )
            if status != 200:
                return False
            app_ports = [
                int(p["containerPort"])
                for c in spec["containers"]
                if c["name"] != PROXY_CONTAINER and c["name"] in task.procs
                for p in c.get("ports") or []
            ]
            return all(_port_open(task.netns, port) for port in app_ports)

        _wait(f"{task.pod} ready", ready, ready_timeout)
        self.set_ready(task, True)

    def set_ready(self, task: Task, ready: bool) -> None:
        """Report the pod's readiness (and podIP) through the status subresource, as the kubelet does."""
        pod = self.kube.get(PODS, task.pod, self.namespace)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        flag = "True" if ready else "False"
        containers = [c["name"] for c in pod["spec"]["containers"]]
        status = {
            "phase": "Running",
            "podIP": task.address,
            "podIPs": [{"ip": task.address}],
            "hostIP": self.network.hub_address,
            "startTime": now,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": flag, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": name,
                    "ready": ready,
                    "restartCount": 0,
                    "image": "harness",
                    "imageID": "",
                    "state": {"running": {"startedAt": now}},
                }
                for name in containers
            ],
        }
        self.kube.patch(PODS, task.pod, {"status": status}, self.namespace, sub="status")

    def kill(self, task: Task, report: bool = True) -> None:
        """SIGKILL every process of the task; with ``report`` the pod is then reported NotReady."""
        task.signal(signal.SIGKILL)
        task.wait(10)
        task.alive = False
        if report:
            with contextlib.suppress(ApiError):
                self.set_ready(task, False)

    def stop(self, task: Task, grace: float = 30.0) -> None:
        """SIGTERM every process (the proxy drains), wait up to ``grace``; then report the pod NotReady."""
        task.signal(signal.SIGTERM)
        task.wait(grace)
        task.alive = False
        with contextlib.suppress(ApiError):
            self.set_ready(task, False)

    def _terminate(self, task: Task, graceful: bool) -> None:
        task.signal(signal.SIGTERM if graceful else signal.SIGKILL)
        task.wait(15 if graceful else 10)
        task.alive = False
        self.network.unplug(task.netns)
        shutil.rmtree(self._config_root / task.pod, ignore_errors=True)
        self.tasks.pop(task.pod, None)

    # -- CoreDNS ------------------------------------------------------------------------------------------

    def _dns_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.sync_dns()
            except ApiError:
                continue  # the API server was busy; the next round catches up
            except BaseException as exc:  # surfaced by dns_addresses/wait_dns
                self._dns_error = exc

    def sync_dns(self) -> None:
        """Headless Services as A and SRV records: the Ready pods their selector matches, with the port
        their ``targetPort`` names in each pod (what the endpoints controller and CoreDNS do together).

        Computed here rather than read from ``Endpoints``: the real endpoints controller refuses link-local
        pod addresses (and pods bound to no node), and link-local addresses are what keeps these tests'
        packets off the machine's real networks.
        """
        dns = self.network.dns
        if dns is None:
            return
        pods = [
            p
            for p in self.kube.list(PODS, self.namespace)
            if not p["metadata"].get("deletionTimestamp")
            and _is_ready(p)
            and (p.get("status") or {}).get("podIP")
        ]
        a: dict[str, list[str]] = {}
        srv: dict[str, list[tuple[str, int]]] = {}
        for svc in self.kube.list(SERVICES, self.namespace):
            spec = svc["spec"]
            if spec.get("clusterIP") == "None" and not spec.get("selector"):
                self._slice_records(svc, a, srv)
                continue
            if spec.get("clusterIP") != "None" or not spec.get("selector"):
                continue
            fqdn = f"{svc['metadata']['name']}.{self.namespace}.svc.{CLUSTER_DOMAIN}"
            a[fqdn] = []
            selector = spec["selector"].items()
            for pod in pods:
                if not selector <= (pod["metadata"].get("labels") or {}).items():
                    continue
                ip = pod["status"]["podIP"]
                target = f"{ip.replace('.', '-')}.{fqdn}"
                a[fqdn].append(ip)
                a[target] = [ip]
                for port in spec.get("ports") or []:
                    number = _target_port(pod, port)
                    key = f"_{port.get('name', '')}._{str(port.get('protocol', 'TCP')).lower()}.{fqdn}"
                    records = srv.setdefault(key, [])
                    if number is not None:
                        records.append((target, number))
            for port in spec.get("ports") or []:
                srv.setdefault(
                    f"_{port.get('name', '')}._{str(port.get('protocol', 'TCP')).lower()}.{fqdn}", []
                )
        with dns.lock:
            for old in self._dns_names - set(a) - set(srv):
                dns.a.pop(old, None)
                dns.srv.pop(old, None)
            for key, addrs in a.items():
                dns.a[key] = sorted(addrs)
            for key, records in srv.items():
                dns.srv[key] = sorted(records)
        self._dns_names = set(a) | set(srv)

    def _slice_records(
        self, svc: dict[str, Any], a: dict[str, list[str]], srv: dict[str, list[tuple[str, int]]]
    ) -> None:
        """A selector-less headless Service (e.g. a linked cluster's endpoint mirrored by the operator):
        its records come from the EndpointSlices that name it, as CoreDNS does."""
        name = svc["metadata"]["name"]
        fqdn = f"{name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"
        a[fqdn] = []
        slices = self.kube.list(ENDPOINT_SLICES, self.namespace, {"kubernetes.io/service-name": name})
        for sl in slices:
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                for ip in ep.get("addresses") or []:
                    target = f"{ip.replace('.', '-')}.{fqdn}"
                    a[fqdn].append(ip)
                    a[target] = [ip]
                    for port in sl.get("ports") or []:
                        key = f"_{port.get('name', '')}._{str(port.get('protocol', 'TCP')).lower()}.{fqdn}"
                        srv.setdefault(key, []).append((target, int(port["port"])))
        for port in svc["spec"].get("ports") or []:
            srv.setdefault(f"_{port.get('name', '')}._{str(port.get('protocol', 'TCP')).lower()}.{fqdn}", [])

    def dns_addresses(self, discovery_name: str) -> list[str]:
        """The addresses DNS answers now for the headless Service of ``discovery_name``."""
        if self._dns_error is not None:
            raise HarnessError(f"DNS sync failed: {self._dns_error!r}")
        dns = self.network.dns
        if dns is None:
            return []
        for svc in self.kube.list(SERVICES, self.namespace):
            if (svc["metadata"].get("annotations") or {}).get(
                "serviceconnect.dev/discovery-name"
            ) == discovery_name:
                fqdn = f"{svc['metadata']['name']}.{self.namespace}.svc.{CLUSTER_DOMAIN}"
                with dns.lock:
                    return list(dns.a.get(fqdn, []))
        return []

    def wait_dns(self, discovery_name: str, count: int, timeout: float = 60.0) -> list[str]:
        """Until DNS answers exactly ``count`` addresses for ``discovery_name``; returns them."""
        found: list[str] = []

        def check() -> bool:
            found[:] = self.dns_addresses(discovery_name)
            return len(found) == count

        _wait(f"{count} address(es) in DNS for {discovery_name}", check, timeout)
        return found

    # -- cleanup ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every task, delete their namespaces and files, forget this namespace's DNS records."""
        self._stop.set()
        self._dns_thread.join(10)
        for task in list(self.tasks.values()):
            self._terminate(task, graceful=False)
        dns = self.network.dns
        if dns is not None:
            with dns.lock:
                for name in self._dns_names:
                    dns.a.pop(name, None)
                    dns.srv.pop(name, None)
        shutil.rmtree(self._config_root, ignore_errors=True)


@contextlib.contextmanager
def running(kube: Kube, network: Network, namespace: str, workdir: Path) -> Iterator[Harness]:
    """A :class:`Harness` closed on exit, even on failure."""
    harness = Harness(kube, network, namespace, workdir)
    try:
        yield harness
    finally:
        harness.close()


@contextlib.contextmanager
def scratch_namespaces(kube: Kube) -> Iterator[tuple[str, str]]:
    """A fresh Kubernetes namespace and ConnectNamespace, ``(namespace, cns)``, deleted on exit."""
    tag = uuid.uuid4().hex[:8]
    namespace, cns = f"sc-wp-{tag}", f"cns-{tag}"
    kube.create(NAMESPACES, {"metadata": {"name": namespace}})
    kube.create(
        CONNECT_NAMESPACES, {"apiVersion": API_VERSION, "kind": "ConnectNamespace", "metadata": {"name": cns}}
    )
    try:
        yield namespace, cns
    finally:
        kube.delete(NAMESPACES, namespace)
        kube.delete(CONNECT_NAMESPACES, cns)


# -- spec helpers for scenarios ------------------------------------------------------------------------------


def connect_service(
    name: str,
    namespace: str,
    connect_namespace: str,
    *,
    discovery: str | None = None,
    port: int = 80,
    container_port: int = 8080,
    app_protocol: str | None = "http",
    desired: int = 1,
    serve: bool = True,
    image: str = "registry.example/app:1",
    timeout: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A ConnectService body: one container serving ``container_port``, published (unless ``serve`` is
    False) as ``discovery`` (default: ``name``) on client alias ``discovery:port``; ``timeout`` is the
    Service Connect ``timeout`` block (idleTimeoutSeconds, perRequestTimeoutSeconds)."""
    mapping: dict[str, Any] = {"name": "main", "containerPort": container_port, "protocol": "tcp"}
    if app_protocol:
        mapping["appProtocol"] = app_protocol
    scc: dict[str, Any] = {"enabled": True, "namespace": connect_namespace}
    if serve:
        entry: dict[str, Any] = {
            "portName": "main",
            "discoveryName": discovery or name,
            "clientAliases": [{"port": port, "dnsName": discovery or name}],
        }
        if timeout:
            entry["timeout"] = timeout
        scc["services"] = [entry]
    return {
        "apiVersion": "serviceconnect.dev/v1alpha1",
        "kind": "ConnectService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "desiredCount": desired,
            "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 0},
            "taskDefinition": {
                "family": name,
                "networkMode": "awsvpc",
                "cpu": "256",
                "memory": "512",
                "containerDefinitions": [
                    {"name": "app", "image": image, "essential": True, "portMappings": [mapping]}
                ],
            },
            "serviceConnectConfiguration": scc,
        },
    }


def apply_accepted(kube: Kube, body: dict[str, Any], timeout: float = 60.0) -> None:
    """Create (or replace the spec of) a ConnectService and wait until the operator accepts it."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    current = kube.get_or_none(CONNECT_SERVICES, name, namespace)
    if current is None:
        kube.create(CONNECT_SERVICES, body, namespace)
    else:
        kube.patch(CONNECT_SERVICES, name, {"spec": body["spec"]}, namespace)

    def judged() -> dict[str, Any] | None:
        svc = kube.get(CONNECT_SERVICES, name, namespace)
        status = svc.get("status") or {}
        if status.get("observedGeneration") != svc["metadata"]["generation"]:
            return None
        return next((c for c in status.get("conditions") or [] if c["type"] == "Accepted"), None)

    cond = _wait(f"{name} judged by the operator", judged, timeout)
    if cond["status"] != "True":
        raise HarnessError(f"{name} was not accepted: {cond.get('reason')}: {cond.get('message')}")


def scale(kube: Kube, namespace: str, name: str, count: int) -> None:
    """Set a ConnectService's desiredCount (no new ConnectDeployment: the Deployment just scales)."""
    kube.patch(CONNECT_SERVICES, name, {"spec": {"desiredCount": count}}, namespace)
