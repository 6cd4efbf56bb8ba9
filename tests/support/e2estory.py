"""What the e2e story does again and again: wait, apply, exec into pods, read metrics and pod state."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from .envtest import REPO
from .kindenv import Images
from .kubectl import Kubectl

T = TypeVar("T")
NS = "tutorial"
NGINX = "service-connect-nginx-service"
CLIENT = "client"
PROXY = "sc-proxy"
ADMIN_PORT = 9901
# The image the tutorial names for each container, and what stands in for it here.
TUTORIAL_IMAGES = {
    "public.ecr.aws/docker/library/nginx:latest": "nginx",
    "public.ecr.aws/docker/library/busybox:latest": "client",
}


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 180, step: float = 1) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def example(name: str, images: Images) -> dict[str, Any]:
    """An example of examples/, with the tutorial's public images replaced by the locally built ones."""
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    for container in doc.get("spec", {}).get("taskDefinition", {}).get("containerDefinitions", []):
        local = TUTORIAL_IMAGES.get(container.get("image", ""))
        if local is not None:
            container["image"] = getattr(images, local)
    return doc


def webhook_answers(kubectl: Kubectl) -> bool:
    """A server-side dry run of a ConnectNamespace went through the admission webhook. Right after `helm
    install --wait` the operator pod is Ready, but kube-proxy may not have programmed its Service yet
    (a second or so on the local node): until then the API server's calls to the webhook are refused."""
    return (
        kubectl.run(
            "apply", "--dry-run=server", "-f", str(REPO / "examples" / "00-namespaces.yaml"), check=False
        ).returncode
        == 0
    )


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


def fetch(kubectl: Kubectl, url: str, timeout_s: int = 5, target: str = f"deploy/{CLIENT}") -> Any:
    """`wget -S` from the client's app container: traffic leaves through its proxy (interception)."""
    return kubectl.run(
        "exec", target, "-n", NS, "-c", "client", "--",
        "wget", "-S", "-T", str(timeout_s), "-O", "/dev/null", url,
        check=False, timeout=60,
    )  # fmt: skip


def proxy_python(kubectl: Kubectl, target: str, script: str) -> str:
    """Run a Python snippet in a pod's proxy container (python is in the proxy image, nothing else is)."""
    return kubectl("exec", target, "-n", NS, "-c", PROXY, "--", "python", "-c", script, timeout=60)


def metric(kubectl: Kubectl, target: str, name: str, label: str, value: str) -> float:
    """A counter from a proxy's admin /metrics, read from inside its pod."""
    out = proxy_python(
        kubectl,
        target,
        f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{ADMIN_PORT}/metrics').read().decode())",
    )
    total = 0.0
    pattern = re.compile(rf'^{name}(?:_total)?\{{[^}}]*{label}="{value}"[^}}]*\}} (\S+)$')
    for line in out.splitlines():
        m = pattern.match(line)
        if m:
            total += float(m.group(1))
    return total


def pods(kubectl: Kubectl, service: str) -> list[dict[str, Any]]:
    out = json.loads(
        kubectl("get", "pods", "-n", NS, "-l", f"serviceconnect.dev/service={service}", "-o", "json")
    )
    items: list[dict[str, Any]] = out["items"]
    return items


def is_ready(pod: dict[str, Any]) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or []
    )


def ready_pods(kubectl: Kubectl, service: str) -> list[str]:
    return [p["metadata"]["name"] for p in pods(kubectl, service) if is_ready(p)]


def server_minor(kubectl: Kubectl) -> tuple[int, int]:
    info = json.loads(kubectl("version", "-o", "json"))["serverVersion"]
    return int(info["major"]), int(re.sub(r"\D.*", "", info["minor"]))
