"""The seed tutorial on a kind cluster, installed with helm, from apply to uninstall.

One story, in order (pytest runs a module's tests top to bottom): the operator is up; what ECS refuses
is refused at `kubectl apply`; the tutorial's nginx service and a client come up; the client reaches
http://nginx:80/ through its proxy and nginx's proxy; the proxies count it; the server scales; a new
endpoint is unseen by old client tasks and seen after a redeploy (pinning); `helm uninstall` leaves
nothing behind but the ConnectNamespace (and the kept CRDs).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import yaml

from sc_operator.validation import DEPLOYMENT_CONTROLLER_MESSAGE, STANDALONE_TASK_MESSAGE
from support.envtest import REPO
from support.kindenv import Release
from support.kubectl import Kubectl

T = TypeVar("T")
NS = "tutorial"
NGINX = "service-connect-nginx-service"
CLIENT = "client"
PROXY = "sc-proxy"
ADMIN_PORT = 9901


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 180, step: float = 2) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    return doc


def apply(kubectl: Kubectl, *docs: dict[str, Any]) -> Any:
    return kubectl.run(
        "apply", "-f", "-", input="".join(f"---\n{yaml.safe_dump(d)}" for d in docs), check=False
    )


def accepted(kubectl: Kubectl, name: str) -> bool:
    out = kubectl.run("get", "connectservice", name, "-n", NS, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    conds = json.loads(out.stdout).get("status", {}).get("conditions") or []
    return any(c["type"] == "Accepted" and c["status"] == "True" for c in conds)


def rolled_out(kubectl: Kubectl, deployment: str) -> None:
    kubectl("rollout", "status", f"deployment/{deployment}", "-n", NS, "--timeout=300s", timeout=320)


def fetch(kubectl: Kubectl, url: str, timeout_s: int = 5) -> Any:
    """`wget -S` from the client's app container: traffic leaves through its proxy (interception)."""
    return kubectl.run(
        "exec", f"deploy/{CLIENT}", "-n", NS, "-c", "client", "--",
        "wget", "-S", "-T", str(timeout_s), "-O", "/dev/null", url,
        check=False, timeout=60,
    )  # fmt: skip


def metric(kubectl: Kubectl, target: str, name: str, label: str, value: str) -> float:
    """A counter from a proxy's admin /metrics, read from inside its pod (python is in the proxy image)."""
    script = f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{ADMIN_PORT}/metrics').read().decode())"
    out = kubectl("exec", target, "-n", NS, "-c", PROXY, "--", "python", "-c", script, timeout=60)
    total = 0.0
    pattern = re.compile(rf'^{name}(?:_total)?\{{[^}}]*{label}="{value}"[^}}]*\}} (\S+)$')
    for line in out.splitlines():
        m = pattern.match(line)
        if m:
            total += float(m.group(1))
    return total


@pytest.fixture(scope="module")
def tutorial(release: Release, kubectl: Kubectl) -> None:
    """The seed tutorial's namespace, nginx service and a client service, all Accepted and rolled out."""
    proc = kubectl.run("apply", "-f", str(REPO / "examples" / "00-namespaces.yaml"), check=False)
    assert proc.returncode == 0, proc.stderr
    proc = apply(kubectl, example("10-nginx.yaml"), example("20-client.yaml"))
    assert proc.returncode == 0, proc.stderr
    for name in (NGINX, CLIENT):
        wait_for(f"{name} Accepted", lambda name=name: accepted(kubectl, name))  # type: ignore[misc]
        rolled_out(kubectl, name)


def test_operator_is_running(release: Release, kubectl: Kubectl) -> None:
    kubectl("rollout", "status", "deployment/sc-service-connect", "-n", release.namespace, "--timeout=120s")


def test_code_deploy_is_refused_at_apply(tutorial: None, kubectl: Kubectl) -> None:
    doc = example("10-nginx.yaml")
    doc["metadata"]["name"] = "blue-green"
    doc["spec"]["deploymentController"] = {"type": "CODE_DEPLOY"}
    proc = apply(kubectl, doc)
    assert proc.returncode != 0
    assert DEPLOYMENT_CONTROLLER_MESSAGE in proc.stderr


def test_standalone_pod_is_refused(tutorial: None, kubectl: Kubectl) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "standalone",
            "namespace": NS,
            "labels": {"serviceconnect.dev/service": "nginx"},
        },
        "spec": {"containers": [{"name": "app", "image": "public.ecr.aws/docker/library/busybox:latest"}]},
    }
    proc = apply(kubectl, pod)
    assert proc.returncode != 0
    assert STANDALONE_TASK_MESSAGE in proc.stderr


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


def test_scaling_the_server_spreads_requests(tutorial: None, kubectl: Kubectl) -> None:
    kubectl("patch", "connectservice", NGINX, "-n", NS, "--type=merge", "-p", '{"spec":{"desiredCount":3}}')
    rolled_out(kubectl, NGINX)

    def three_ready() -> list[str] | None:
        ready = _ready_pods(kubectl, NGINX)
        return ready if len(ready) == 3 else None

    pods = wait_for("3 ready nginx tasks", three_ready)
    # The client's proxy learns the new tasks from DNS (no redeploy): requests reach more than one.
    before = {pod: metric(kubectl, f"pod/{pod}", "RequestCount", "DiscoveryName", "nginx") for pod in pods}
    for _ in range(12):
        assert fetch(kubectl, "http://nginx:80/").returncode == 0
    served = [
        pod
        for pod in pods
        if metric(kubectl, f"pod/{pod}", "RequestCount", "DiscoveryName", "nginx") > before[pod]
    ]
    assert len(served) >= 2, f"12 requests all went to {served}"


def _ready_pods(kubectl: Kubectl, service: str) -> list[str]:
    out = json.loads(
        kubectl("get", "pods", "-n", NS, "-l", f"serviceconnect.dev/service={service}", "-o", "json")
    )
    return [
        p["metadata"]["name"]
        for p in out["items"]
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
    ]


def test_new_endpoints_reach_clients_only_after_a_redeploy(tutorial: None, kubectl: Kubectl) -> None:
    extra = example("10-nginx.yaml")
    extra["metadata"]["name"] = "extra"
    extra["spec"]["taskDefinition"]["family"] = "extra"
    sc = extra["spec"]["serviceConnectConfiguration"]["services"][0]
    sc["discoveryName"] = "extra"
    sc["clientAliases"] = [{"port": 80, "dnsName": "extra"}]
    assert apply(kubectl, extra).returncode == 0
    wait_for("extra Accepted", lambda: accepted(kubectl, "extra"))
    rolled_out(kubectl, "extra")
    # The running client task was pinned to the endpoints of its deployment: "extra" is not among them.
    assert fetch(kubectl, "http://extra:80/", timeout_s=3).returncode != 0
    # A new deployment of the client (any task definition change) pins the current endpoints.
    kubectl(
        "patch", "connectservice", CLIENT, "-n", NS, "--type=json", "-p",
        json.dumps([{"op": "add", "path": "/spec/taskDefinition/containerDefinitions/0/environment",
                     "value": [{"name": "REDEPLOY", "value": "1"}]}]),
    )  # fmt: skip
    rolled_out(kubectl, CLIENT)
    wait_for(
        "the redeployed client to reach extra", lambda: fetch(kubectl, "http://extra:80/").returncode == 0
    )


def test_uninstall_leaves_only_the_connect_namespace(
    tutorial: None, release: Release, kubectl: Kubectl
) -> None:
    kubectl("delete", "connectservices", "--all", "-n", NS, "--wait=true", "--timeout=180s", timeout=200)
    release.helm.run(
        *release.helm_args("uninstall", release.name, "--namespace", release.namespace, "--wait")
    )
    leftovers = kubectl(
        "get", "deployments,replicasets,configmaps,services,connectdeployments", "-n", NS,
        "-l", "app.kubernetes.io/managed-by=serviceconnect", "-o", "name",
    ).split()  # fmt: skip
    assert leftovers == []
    in_release_ns = kubectl(
        "get", "deployments,services,secrets,serviceaccounts", "-n", release.namespace, "-o", "name"
    )
    assert [r for r in in_release_ns.split() if "sc-service-connect" in r] == []
    for kind in ("clusterrole", "clusterrolebinding", "validatingwebhookconfiguration"):
        assert kubectl.run("get", kind, "sc-service-connect", check=False).returncode != 0, kind
    # The registry outlives the installation (like a Cloud Map namespace), and so do the kept CRDs.
    assert kubectl("get", "connectnamespace", "service-connect", "-o", "name").strip()
    assert kubectl("get", "crd", "connectservices.serviceconnect.dev", "-o", "name").strip()
