"""The seed tutorial on a real cluster, installed with helm, from apply to uninstall.

One story, in order (pytest runs a module's tests top to bottom): the operator is up; what ECS refuses
is refused at `kubectl apply`; the tutorial's nginx service and a client come up; the client reaches
http://nginx:80/ through its proxy and nginx's proxy; the proxies count it; the server scales; a new
endpoint is unseen by old client tasks and seen after a redeploy (pinning); a TLS-serving copy of nginx
is reached through both proxies after a redeploy while its pod speaks only TLS 1.3; `helm uninstall` leaves
nothing behind but the ConnectNamespace (and the kept CRDs).

Between those, what only a real kubelet shows: the init container's iptables rules in the pod's network
namespace, the proxy as a native sidecar with no start-up race, the shutdown order (the app stops before
its proxy, no request lost), non-root users and read-only root filesystems, the proxy's memory against its
limit; and, as figures rather than pass/fail, the requests lost and the stale-endpoint windows during a
rolling update and a scale-in of the server while a client streams through both proxies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sc_operator.render.tls import ca_bundle_name, tls_secret_name
from sc_operator.validation import DEPLOYMENT_CONTROLLER_MESSAGE, STANDALONE_TASK_MESSAGE
from support.e2estory import (
    CLIENT,
    NGINX,
    NS,
    PROXY,
    accepted,
    apply,
    example,
    fetch,
    is_ready,
    metric,
    pods,
    proxy_python,
    ready_pods,
    rolled_out,
    server_minor,
    wait_for,
)
from support.envtest import REPO
from support.kindenv import Cluster, Images, Release
from support.kubectl import Kubectl

LOAD = "load"
# One request at a time through both proxies, a line per request: when, HTTP status, which nginx task
# answered (the stand-in nginx image names its pod in X-Served-By). After SIGTERM it goes on for 3 s,
# as an app finishing its work does, then exits: its proxy must still carry those requests.
LOAD_SCRIPT = (
    "stop=\"\"; trap 'stop=$(date +%s)' TERM; "
    "while :; do "
    "t=$(date +%s.%N); "
    "r=$(curl -s -m 3 -o /dev/null -w '%{http_code} %header{x-served-by}' http://nginx:80/); "
    'echo "$t $r"; '
    'if [ -n "$stop" ] && [ $(($(date +%s) - stop)) -ge 3 ]; then echo stopping; exit 0; fi; '
    "sleep 0.05 & wait $!; "
    "done"
)


@pytest.fixture(scope="module")
def tutorial(release: Release, kubectl: Kubectl, images: Images) -> None:
    """The seed tutorial's namespace, nginx service and a client service, all Accepted and rolled out."""
    # A kept cluster (SC_E2E_KEEP) may hold an earlier run's services: start the story from none.
    kubectl.run(
        "delete",
        "connectservices",
        "--all",
        "-n",
        NS,
        "--wait=true",
        "--timeout=180s",
        check=False,
        timeout=200,
    )
    proc = kubectl.run("apply", "-f", str(REPO / "examples" / "00-namespaces.yaml"), check=False)
    assert proc.returncode == 0, proc.stderr
    # As in the tutorial, the client comes after nginx registered: its rollout pins the endpoints there
    # are when it starts, so a client applied together with nginx would not know nginx (ECS does the same).
    for name, file in ((NGINX, "10-nginx.yaml"), (CLIENT, "20-client.yaml")):
        proc = apply(kubectl, example(file, images))
        assert proc.returncode == 0, proc.stderr
        wait_for(f"{name} Accepted", lambda name=name: accepted(kubectl, name))  # type: ignore[misc]
        rolled_out(kubectl, name)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """Figures measured along the story; written to SC_E2E_REPORT (hack/e2e.sh prints it)."""
    figures: dict[str, Any] = {}
    yield figures  # type: ignore[misc]
    path = os.environ.get("SC_E2E_REPORT")
    if path:
        Path(path).write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def test_operator_is_running(release: Release, kubectl: Kubectl) -> None:
    kubectl("rollout", "status", "deployment/sc-service-connect", "-n", release.namespace, "--timeout=120s")


def test_code_deploy_is_refused_at_apply(tutorial: None, kubectl: Kubectl, images: Images) -> None:
    doc = example("10-nginx.yaml", images)
    doc["metadata"]["name"] = "blue-green"
    doc["spec"]["deploymentController"] = {"type": "CODE_DEPLOY"}
    proc = apply(kubectl, doc)
    assert proc.returncode != 0
    assert DEPLOYMENT_CONTROLLER_MESSAGE in proc.stderr


def test_standalone_pod_is_refused(tutorial: None, kubectl: Kubectl, images: Images) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "standalone",
            "namespace": NS,
            "labels": {"serviceconnect.dev/service": "nginx"},
        },
        "spec": {"containers": [{"name": "app", "image": images.client}]},
    }
    proc = apply(kubectl, pod)
    assert proc.returncode != 0
    assert STANDALONE_TASK_MESSAGE in proc.stderr


def test_proxy_is_a_native_sidecar_and_the_first_request_succeeds(tutorial: None, kubectl: Kubectl) -> None:
    """On 1.29+ the proxy is an init container with restartPolicy Always, so the kubelet starts the app
    only once the proxy's startup probe passed: the client's very first request (its loop's first line)
    already goes through."""
    if server_minor(kubectl) < (1, 29):
        pytest.skip("the API server predates native sidecars: the start-up gate is used instead")
    (pod,) = [p for p in pods(kubectl, CLIENT) if is_ready(p)]
    spec = pod["spec"]
    init = {c["name"]: c for c in spec.get("initContainers", [])}
    assert init[PROXY].get("restartPolicy") == "Always", init
    assert PROXY not in {c["name"] for c in spec["containers"]}
    started = {s["name"]: s for s in pod["status"].get("initContainerStatuses", [])}
    assert started[PROXY]["started"] is True
    first = wait_for(
        "the client's first request",
        lambda: kubectl("logs", pod["metadata"]["name"], "-n", NS, "-c", "client").splitlines()[:1],
        timeout=60,
    )
    assert first == ["ok"], f"the app's first request failed: {first}"


def test_interception_is_installed_in_the_pod_network_namespace(
    tutorial: None, kubectl: Kubectl, cluster: Cluster
) -> None:
    """The init container's REDIRECT rule is in the pod's own network namespace, and a connection from
    the app to the hostAlias address of nginx lands on the proxy (nothing listens on 127.255.0.N:80)."""
    hosts = kubectl("exec", f"deploy/{CLIENT}", "-n", NS, "-c", "client", "--", "cat", "/etc/hosts")
    vip = next(line.split()[0] for line in hosts.splitlines() if line.split()[1:2] == ["nginx"])
    assert vip.startswith("127.255."), hosts
    proc = fetch(kubectl, f"http://{vip}:80/")
    assert proc.returncode == 0, proc.stderr
    assert "server: envoy" in proc.stderr.lower()
    # Listening sockets (state 0A) of the pod, by local address: none on the alias address itself.
    table = proxy_python(kubectl, f"deploy/{CLIENT}", "print(open('/proc/net/tcp').read())")
    listening = {
        f[1] for f in (line.split() for line in table.splitlines()[1:]) if len(f) > 3 and f[3] == "0A"
    }
    vip_hex = "".join(f"{int(o):02X}" for o in reversed(vip.split("."))) + ":0050"
    assert vip_hex not in listening, "something listens on the alias address itself: not interception"
    assert listening, table
    if cluster.kind is not None or not os.environ.get("SC_E2E_LOCAL_NODE"):
        return  # the rule itself is read from the node below; kind nodes are containers of their own
    (pod,) = [p for p in pods(kubectl, CLIENT) if is_ready(p)]
    rules = _pod_netns_iptables(pod["status"]["podIP"])
    assert "-d 127.255.0.0/16" in rules, rules
    assert "REDIRECT" in rules, rules
    host = subprocess.run(["iptables", "-t", "nat", "-S", "OUTPUT"], capture_output=True, text=True)
    assert "127.255.0.0/16" not in host.stdout, "the rule leaked into the node's own namespace"


def _pod_netns_iptables(pod_ip: str) -> str:
    """The nat table of the network namespace that holds pod_ip (the CNI plugin names them cni-*)."""
    for ns in sorted(Path("/run/netns").glob("cni-*")):
        addrs = subprocess.run(
            ["ip", "netns", "exec", ns.name, "ip", "-4", "-o", "addr"], capture_output=True, text=True
        ).stdout
        if f" {pod_ip}/" in addrs:
            iptables = shutil.which("iptables") or "iptables"
            return subprocess.run(
                ["ip", "netns", "exec", ns.name, iptables, "-t", "nat", "-S"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
    raise AssertionError(f"no network namespace holds {pod_ip}")


def test_client_reaches_nginx_through_both_proxies(tutorial: None, kubectl: Kubectl) -> None:
    proc = wait_for(
        "a 200 from http://nginx:80/", lambda: (p := fetch(kubectl, "http://nginx:80/")).returncode == 0 and p
    )
    headers = proc.stderr.lower()
    assert "200 ok" in headers
    # The proxies replace the app's Server header and time the upstream, as Envoy does in ECS.
    assert "server: envoy" in headers
    assert "x-envoy-upstream-service-time:" in headers


def test_proxies_count_the_request(tutorial: None, kubectl: Kubectl) -> None:
    before = metric(kubectl, f"deploy/{CLIENT}", "RequestCountPerTarget", "TargetDiscoveryName", "nginx")
    served_before = metric(kubectl, f"deploy/{NGINX}", "RequestCount", "DiscoveryName", "nginx")
    assert fetch(kubectl, "http://nginx:80/").returncode == 0
    assert (
        metric(kubectl, f"deploy/{CLIENT}", "RequestCountPerTarget", "TargetDiscoveryName", "nginx")
        >= before + 1
    )
    assert metric(kubectl, f"deploy/{NGINX}", "RequestCount", "DiscoveryName", "nginx") >= served_before + 1


def test_non_root_and_read_only_root_filesystems_hold(
    tutorial: None, release: Release, kubectl: Kubectl
) -> None:
    """The proxy runs as UID 20000 (ECS's AppNetUID) and the operator as 10001, and neither can write
    to its root filesystem: what the pod specs say, the kubelet enforces."""
    probe = (
        "import os\n"
        "try:\n    open('/written-by-e2e', 'w')\n    w = 'writable'\n"
        "except OSError as e:\n    w = e.strerror\n"
        "print(os.getuid(), os.getgid(), w)"
    )
    uid, gid, write = proxy_python(kubectl, f"deploy/{NGINX}", probe).split(maxsplit=2)
    assert (uid, gid) == ("20000", "20000")
    assert write.strip() == "Read-only file system"
    out = kubectl(
        "exec", "deploy/sc-service-connect", "-n", release.namespace, "--", "python", "-c", probe
    ).split(maxsplit=2)  # fmt: skip
    assert out[:2] == ["10001", "10001"]
    assert out[2].strip() == "Read-only file system"


def test_proxy_memory_stays_under_its_limit(tutorial: None, kubectl: Kubectl, report: dict[str, Any]) -> None:
    """The kubelet gives the proxy its memory limit as a cgroup limit; after the traffic so far the
    proxy's usage is well under it."""
    (pod,) = [p for p in pods(kubectl, NGINX) if is_ready(p)][:1]
    containers = pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    limit = next(c for c in containers if c["name"] == PROXY)["resources"]["limits"]["memory"]
    script = (
        "import os\n"
        "for use, lim in (('memory.current', 'memory.max'),"
        " ('memory/memory.usage_in_bytes', 'memory/memory.limit_in_bytes')):\n"
        "    if os.path.exists('/sys/fs/cgroup/' + use):\n"
        "        print(open('/sys/fs/cgroup/' + use).read().strip(),"
        " open('/sys/fs/cgroup/' + lim).read().strip()); break\n"
    )
    usage, cg_limit = (
        int(x) for x in proxy_python(kubectl, f"pod/{pod['metadata']['name']}", script).split()
    )
    assert cg_limit == _bytes(limit), f"cgroup limit {cg_limit} is not the spec's {limit}"
    assert usage < 0.8 * cg_limit, f"the proxy uses {usage} of {cg_limit} bytes"
    report["proxy_memory"] = {"usage_bytes": usage, "limit_bytes": cg_limit}


def _bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 1000, "M": 1000**2, "G": 1000**3}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def test_scaling_the_server_spreads_requests(tutorial: None, kubectl: Kubectl) -> None:
    kubectl("patch", "connectservice", NGINX, "-n", NS, "--type=merge", "-p", '{"spec":{"desiredCount":3}}')
    rolled_out(kubectl, NGINX)

    def three_ready() -> list[str] | None:
        ready = ready_pods(kubectl, NGINX)
        return ready if len(ready) == 3 else None

    names = wait_for("3 ready nginx tasks", three_ready)
    # The client's proxy learns the new tasks from DNS (no redeploy): within a few refresh intervals
    # (5 s each, plus the cluster DNS's 5 s cache) requests reach more than one of them.
    before = {pod: metric(kubectl, f"pod/{pod}", "RequestCount", "DiscoveryName", "nginx") for pod in names}

    def spread() -> list[str] | None:
        for _ in range(6):
            assert fetch(kubectl, "http://nginx:80/").returncode == 0
        served = [
            pod
            for pod in names
            if metric(kubectl, f"pod/{pod}", "RequestCount", "DiscoveryName", "nginx") > before[pod]
        ]
        return served if len(served) >= 2 else None

    wait_for("requests to reach more than one nginx task", spread, timeout=60)


def test_new_endpoints_reach_clients_only_after_a_redeploy(
    tutorial: None, kubectl: Kubectl, images: Images
) -> None:
    extra = example("10-nginx.yaml", images)
    extra["metadata"]["name"] = "extra"
    extra["spec"]["taskDefinition"]["family"] = "extra"
    sc = extra["spec"]["serviceConnectConfiguration"]["services"][0]
    sc["discoveryName"] = "extra"
    sc["clientAliases"] = [{"port": 80, "dnsName": "extra-alias"}]
    assert apply(kubectl, extra).returncode == 0
    wait_for("extra Accepted", lambda: accepted(kubectl, "extra"))
    rolled_out(kubectl, "extra")
    # The running client task was pinned to the endpoints of its deployment: "extra" is not among them.
    assert fetch(kubectl, "http://extra-alias:80/", timeout_s=3).returncode != 0
    # `scctl redeploy` (ECS update-service --force-new-deployment): a new deployment of the same
    # definition pins the current endpoints; `kubectl rollout restart` would keep the old pin.
    before = kubectl("get", "deployment", CLIENT, "-n", NS, "-o", "jsonpath={.metadata.generation}")
    _redeploy(kubectl, CLIENT)
    assert kubectl("get", "deployment", CLIENT, "-n", NS, "-o", "jsonpath={.metadata.generation}") != before
    rolled_out(kubectl, CLIENT)
    # Every name a client may use resolves (seed: the port name, the discovery name, the alias).
    for name in ("extra-alias", "extra"):
        wait_for(
            f"the redeployed client to reach {name}",
            lambda name=name: fetch(kubectl, f"http://{name}:80/").returncode == 0,  # type: ignore[misc]
        )


TLS_SERVICE = "nginx-tls"


def _client_curl(kubectl: Kubectl, *args: str, ca_bundle: str | None = None) -> Any:
    """``curl -sS --max-time 10 ARGS`` in the client's app container; with ``ca_bundle`` (PEM), curl
    trusts only it (``--cacert``, a file the bundle is written to in the container's own /tmp)."""
    script = 'exec curl -sS --max-time 10 "$@"'
    if ca_bundle is not None:
        script = 'f=$(mktemp) && cat >"$f" && exec curl -sS --max-time 10 --cacert "$f" "$@"'
    return kubectl.run(
        "exec", *(["-i"] if ca_bundle is not None else []), f"deploy/{CLIENT}", "-n", NS, "-c", "client",
        "--", "sh", "-c", script, "sh", *args,
        input=ca_bundle, check=False, timeout=60,
    )  # fmt: skip


def test_tls_between_the_proxies_on_a_real_node(tutorial: None, kubectl: Kubectl, images: Images) -> None:
    """A TLS-serving copy of nginx (its own names, ``tls: {issuerCertificateAuthority: {}}``): the operator
    issues its certificate from the ConnectNamespace's CA, the kubelet mounts it, and after a redeploy the
    client reaches it through both proxies. On the wire the server task's containerPort speaks TLS 1.3
    only: plaintext HTTP to the pod IP fails, TLS 1.2 is refused, and a TLS 1.3 handshake verified against
    the CA bundle the operator published presents a certificate naming the service (and no other name)."""
    body = example("10-nginx.yaml", images)
    body["metadata"]["name"] = TLS_SERVICE
    body["spec"]["taskDefinition"]["family"] = TLS_SERVICE
    sc = body["spec"]["serviceConnectConfiguration"]["services"][0]
    sc["discoveryName"] = TLS_SERVICE
    sc["clientAliases"] = [{"port": 80, "dnsName": TLS_SERVICE}]
    sc["tls"] = {"issuerCertificateAuthority": {}}
    assert apply(kubectl, body).returncode == 0
    wait_for(f"{TLS_SERVICE} Accepted", lambda: accepted(kubectl, TLS_SERVICE))
    rolled_out(kubectl, TLS_SERVICE)
    leaf = kubectl("get", "secret", tls_secret_name(TLS_SERVICE), "-n", NS, "-o", "jsonpath={.type}")
    assert leaf == "kubernetes.io/tls"

    # The running client was pinned without it; a redeploy pins the TLS endpoint (and mounts the bundle).
    _redeploy(kubectl, CLIENT)
    rolled_out(kubectl, CLIENT)
    served = metric(kubectl, f"deploy/{TLS_SERVICE}", "RequestCount", "DiscoveryName", TLS_SERVICE)
    reached = wait_for(
        f"the redeployed client to reach {TLS_SERVICE} over TLS",
        lambda: (p := fetch(kubectl, f"http://{TLS_SERVICE}:80/")).returncode == 0 and p,
        timeout=120,
    )
    assert "server: envoy" in reached.stderr.lower()
    assert metric(kubectl, f"deploy/{TLS_SERVICE}", "RequestCount", "DiscoveryName", TLS_SERVICE) > served
    assert (
        metric(
            kubectl, f"deploy/{CLIENT}", "TargetTLSNegotiationErrorCount", "TargetDiscoveryName", TLS_SERVICE
        )
        == 0
    )

    # The server task's containerPort, addressed directly from the client's app (no client proxy on the
    # way: a pod IP is not intercepted there; the server pod's rule sends it to the TLS listener).
    (pod,) = [p for p in pods(kubectl, TLS_SERVICE) if is_ready(p)][:1]
    ip = pod["status"]["podIP"]
    server = f"pod/{pod['metadata']['name']}"
    refused = metric(kubectl, server, "ClientTLSNegotiationErrorCount", "DiscoveryName", TLS_SERVICE)
    plain = _client_curl(kubectl, "-o", "/dev/null", "-w", "%{http_code}", f"http://{ip}:80/")
    assert plain.returncode != 0, f"plaintext HTTP to the TLS listener answered {plain.stdout!r}"

    bundle = kubectl(
        "get", "configmap", ca_bundle_name("service-connect"), "-n", NS, "-o", "jsonpath={.data.ca\\.crt}"
    )
    assert "BEGIN CERTIFICATE" in bundle
    assert "PRIVATE KEY" not in bundle
    resolve = ["--resolve", f"{TLS_SERVICE}:80:{ip}"]
    tls13 = _client_curl(
        kubectl, "-v", "--tlsv1.3", *resolve, "-o", "/dev/null", "-w", "%{ssl_verify_result} %{http_code}",
        f"https://{TLS_SERVICE}:80/", ca_bundle=bundle,
    )  # fmt: skip
    assert tls13.returncode == 0, tls13.stderr
    assert tls13.stdout.split() == ["0", "200"], tls13.stdout  # verified chain, nginx's page
    assert "SSL connection using TLSv1.3" in tls13.stderr, tls13.stderr
    assert f'host "{TLS_SERVICE}" matched' in tls13.stderr, tls13.stderr
    # TLS 1.2 at most: refused (ECS: TLS 1.3 only).
    tls12 = _client_curl(
        kubectl, "--tlsv1.2", "--tls-max", "1.2", *resolve, "-o", "/dev/null",
        f"https://{TLS_SERVICE}:80/", ca_bundle=bundle,
    )  # fmt: skip
    assert tls12.returncode != 0, tls12.stdout
    # The server proxy counted both failed handshakes (plaintext, TLS 1.2) on the listener.
    wait_for(
        "the failed handshakes counted",
        lambda: (
            metric(kubectl, server, "ClientTLSNegotiationErrorCount", "DiscoveryName", TLS_SERVICE)
            >= refused + 2
        ),
        timeout=30,
    )
    # Another name is not in the certificate: verification fails.
    other = _client_curl(
        kubectl, "--tlsv1.3", "--resolve", f"not-{TLS_SERVICE}:80:{ip}", "-o", "/dev/null",
        f"https://not-{TLS_SERVICE}:80/", ca_bundle=bundle,
    )  # fmt: skip
    assert other.returncode == 60, other.stderr  # CURLE_PEER_FAILED_VERIFICATION

    # Leave the story as it was for the steps after this one: the TLS copy goes (its leaf Secret with it).
    kubectl("delete", "connectservice", TLS_SERVICE, "-n", NS, "--wait=true", "--timeout=180s", timeout=200)


def _redeploy(kubectl: Kubectl, service: str) -> None:
    """`scctl redeploy` (ECS update-service --force-new-deployment): a new deployment pins the current
    endpoints, where `kubectl rollout restart` would keep the old pin."""
    scctl = Path(sys.executable).with_name("scctl")
    proc = subprocess.run(
        [str(scctl), "redeploy", f"{NS}/{service}", "--kubeconfig", str(kubectl.kubeconfig), "--wait", "120"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_admin_is_loopback_only_while_probes_and_metrics_reach_the_pod(
    tutorial: None, kubectl: Kubectl
) -> None:
    """From another pod: the proxy's /ready and /metrics answer on the pod IP (kubelet, Prometheus);
    /config and POST /drain do not (they are on the loopback admin listener only)."""
    pod = pods(kubectl, NGINX)[0]
    ip = pod["status"]["podIP"]
    annotations = pod["metadata"].get("annotations") or {}
    port = annotations.get("prometheus.io/port")
    assert port, annotations
    ready = fetch(kubectl, f"http://{ip}:{port}/ready")
    assert ready.returncode == 0, ready.stderr
    assert fetch(kubectl, f"http://{ip}:{port}/metrics").returncode == 0
    assert "404" in fetch(kubectl, f"http://{ip}:{port}/config").stderr
    local = proxy_python(
        kubectl,
        f"pod/{pod['metadata']['name']}",
        "import json,urllib.request;print(json.load(urllib.request.urlopen("
        "'http://127.0.0.1:9902/config'))['version'])",
    )
    assert local.strip()
    # 9902: the loopback admin port's default (nginx's own port 80 does not move it).
    refused = fetch(kubectl, f"http://{ip}:9902/config", timeout_s=3)
    assert refused.returncode != 0
    assert "200 OK" not in refused.stderr


@pytest.fixture(scope="module")
def load(tutorial: None, kubectl: Kubectl, images: Images) -> str:
    """A client service whose app streams requests to http://nginx:80/ through both proxies."""
    doc = example("20-client.yaml", images)
    doc["metadata"]["name"] = LOAD
    doc["spec"]["taskDefinition"]["family"] = LOAD
    app = doc["spec"]["taskDefinition"]["containerDefinitions"][0]
    app["name"] = LOAD
    app["command"] = ["sh", "-c", LOAD_SCRIPT]
    assert apply(kubectl, doc).returncode == 0
    wait_for(f"{LOAD} Accepted", lambda: accepted(kubectl, LOAD))
    rolled_out(kubectl, LOAD)
    (name,) = ready_pods(kubectl, LOAD)
    return name


def _load_lines(text: str) -> list[tuple[float, str, str]]:
    """(time, status, served-by) for each request line of the load app's log."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].replace(".", "", 1).isdigit():
            out.append((float(parts[0]), parts[1], parts[2] if len(parts) > 2 else ""))
    return out


def _ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_rolling_update_and_scale_in_while_a_client_streams(
    load: str, kubectl: Kubectl, report: dict[str, Any]
) -> None:
    """While the server rolls to a new task definition and then scales in (3 -> 1): figures for the
    rollout (requests lost, how long new tasks wait for traffic and terminated ones keep receiving it),
    and a bar for the scale-in: the client knows the remaining task, and the stopping ones keep refusing
    (lingerSeconds) until it drops them, so no request may fail. The rollout uses ECS's defaults for a
    service (minimumHealthyPercent 100, maximumPercent 200)."""
    wait_for("the load client streaming", lambda: len(_load_lines(_logs(kubectl, load))) >= 20, timeout=60)
    old = {p["metadata"]["name"] for p in pods(kubectl, NGINX)}
    t0 = time.time()
    kubectl(
        "patch", "connectservice", NGINX, "-n", NS, "--type=json", "-p",
        json.dumps([
            {"op": "replace", "path": "/spec/deploymentConfiguration",
             "value": {"minimumHealthyPercent": 100, "maximumPercent": 200}},
            {"op": "add", "path": "/spec/taskDefinition/containerDefinitions/0/environment",
             "value": [{"name": "ROLL", "value": "1"}]},
        ]),
    )  # fmt: skip
    seen: dict[str, dict[str, Any]] = {}

    def settled() -> bool:
        for p in pods(kubectl, NGINX):
            entry = seen.setdefault(p["metadata"]["name"], {})
            if is_ready(p):
                ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
                entry.setdefault("ready", _ts(ready["lastTransitionTime"]))
            if p["metadata"].get("deletionTimestamp"):
                # deletionTimestamp is when the grace period ends; the deletion began that much earlier.
                grace = p["metadata"].get("deletionGracePeriodSeconds") or 0
                entry.setdefault("deleted", _ts(p["metadata"]["deletionTimestamp"]) - grace)
        current = {p["metadata"]["name"] for p in pods(kubectl, NGINX)}
        return not (current & old) and len(ready_pods(kubectl, NGINX)) == 3

    wait_for("the rolling update to replace every nginx task", settled, timeout=300, step=0.5)
    new_tasks = {p["metadata"]["name"] for p in pods(kubectl, NGINX)} - old

    def new_tasks_served() -> bool:
        return any(by in new_tasks for _, status, by in _load_lines(_logs(kubectl, load)) if status == "200")

    # Until its DNS refresh the client knows only the old tasks' addresses: wait (bounded) until it
    # reaches a new one, so the scale-in below starts from a client that knows the new tasks.
    wait_for("the client to reach a new nginx task", new_tasks_served, timeout=60, step=0.5)
    t_roll = time.time()
    time.sleep(3)
    kubectl("patch", "connectservice", NGINX, "-n", NS, "--type=merge", "-p", '{"spec":{"desiredCount":1}}')

    def scaled_in() -> bool:
        settled()
        return len(pods(kubectl, NGINX)) == 1 and len(ready_pods(kubectl, NGINX)) == 1

    wait_for("the scale-in to 1 task", scaled_in, timeout=300, step=0.5)
    time.sleep(5)
    t_end = time.time()
    lines = [ln for ln in _load_lines(_logs(kubectl, load)) if ln[0] >= t0 - 1]
    roll = [ln for ln in lines if ln[0] < t_roll]
    scale = [ln for ln in lines if ln[0] >= t_roll]
    first_served: dict[str, float] = {}
    last_served: dict[str, float] = {}
    for t, status, by in lines:
        if status == "200" and by:
            first_served.setdefault(by, t)
            last_served[by] = t
    new_wait = {
        pod: round(first_served[pod] - e["ready"], 2)
        for pod, e in seen.items()
        if pod not in old and "ready" in e and pod in first_served
    }
    stale = {
        pod: round(last_served[pod] - e["deleted"], 2)
        for pod, e in seen.items()
        if "deleted" in e and pod in last_served
    }
    # Status 000: curl's 3 s limit passed without an answer.
    report["rolling_update"] = {
        "requests": len(roll),
        "failed": sum(1 for ln in roll if ln[1] != "200"),
        "failed_statuses": sorted({ln[1] for ln in roll if ln[1] != "200"}),
        "seconds": round(t_roll - t0, 1),
    }
    report["scale_in"] = {
        "requests": len(scale),
        "failed": sum(1 for ln in scale if ln[1] != "200"),
        "failed_statuses": sorted({ln[1] for ln in scale if ln[1] != "200"}),
        "seconds": round(t_end - t_roll, 1),
    }
    report["new_task_first_request_after_ready_s"] = new_wait
    report["terminated_task_last_request_after_deletion_s"] = stale
    print(json.dumps(report, indent=2))
    assert len(lines) >= 20, "the load client did not stream"
    assert new_wait, f"no new task received traffic: {seen}, {sorted(first_served)}"
    assert not [ln for ln in scale if ln[1] != "200"], f"requests failed during the scale-in: {scale}"


def _logs(kubectl: Kubectl, pod: str) -> str:
    return kubectl("logs", pod, "-n", NS, "-c", LOAD, timeout=60)


def test_pod_deletion_stops_the_app_before_its_proxy(
    load: str, kubectl: Kubectl, report: dict[str, Any]
) -> None:
    """Delete the streaming client's pod: the app gets SIGTERM first and keeps sending for 3 s, the proxy
    stops only after the app has exited, and no request of the app fails on the way out."""
    stream = subprocess.Popen(
        [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "logs", "-f", load, "-n", NS, "-c", LOAD],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for("the load client streaming", lambda: len(_load_lines(_logs(kubectl, load))) >= 5, timeout=60)
        finished: dict[str, str] = {}
        with kubectl.watch("pod", load, "-n", NS) as watch:
            t_delete = time.time()
            kubectl("delete", "pod", load, "-n", NS, "--wait=false")
            events = watch.wait_for(
                "the deleted load pod to go", lambda evs: any(t == "DELETED" for t, _ in evs), timeout=120
            )
        for _, obj in events:
            status = obj.get("status", {})
            for s in status.get("containerStatuses", []) + status.get("initContainerStatuses", []):
                term = s.get("state", {}).get("terminated")
                if term and s["name"] not in finished:
                    finished[s["name"]] = term["finishedAt"]
        out, _ = stream.communicate(timeout=60)
    finally:
        if stream.poll() is None:
            stream.kill()
    # The stream starts with the pod's whole log: only what happened from the deletion on counts here.
    lines = [ln for ln in _load_lines(out) if ln[0] >= t_delete]
    failed = [ln for ln in lines if ln[1] != "200"]
    report["client_pod_deletion"] = {"requests": len(lines), "failed": len(failed), "finished": finished}
    assert "stopping" in out, "the app never got SIGTERM"
    assert len(lines) >= 10, f"the app sent too little after SIGTERM to tell: {lines}"
    assert not failed, f"requests failed while the pod shut down: {failed}"
    assert LOAD in finished, f"the app's end was not seen: {finished}"
    if PROXY in finished:
        assert _ts(finished[LOAD]) <= _ts(finished[PROXY]), f"the proxy stopped before the app: {finished}"


def test_uninstall_leaves_only_the_connect_namespace(
    tutorial: None, release: Release, kubectl: Kubectl
) -> None:
    kubectl("delete", "connectservices", "--all", "-n", NS, "--wait=true", "--timeout=180s", timeout=200)
    release.helm.run(
        *release.helm_args("uninstall", release.name, "--namespace", release.namespace, "--wait"),
        timeout=300,
    )

    # The garbage collector removes the children (Deployments, then their ReplicaSets) in the background.
    def nothing_left() -> bool:
        return not kubectl(
            "get", "deployments,replicasets,configmaps,services,connectdeployments", "-n", NS,
            "-l", "app.kubernetes.io/managed-by=serviceconnect", "-o", "name",
        ).split()  # fmt: skip

    wait_for("the services' children to be collected", nothing_left, timeout=120)
    in_release_ns = kubectl(
        "get", "deployments,services,secrets,serviceaccounts", "-n", release.namespace, "-o", "name"
    )
    assert [r for r in in_release_ns.split() if "sc-service-connect" in r] == []
    for kind in ("clusterrole", "clusterrolebinding", "validatingwebhookconfiguration"):
        assert kubectl.run("get", kind, "sc-service-connect", check=False).returncode != 0, kind
    # The registry outlives the installation (like a Cloud Map namespace), and so do the kept CRDs.
    assert kubectl("get", "connectnamespace", "service-connect", "-o", "name").strip()
    assert kubectl("get", "crd", "connectservices.serviceconnect.dev", "-o", "name").strip()
