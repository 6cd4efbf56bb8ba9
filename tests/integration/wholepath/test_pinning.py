"""Per-deployment pinning end to end (reference §9): "Existing tasks can't resolve and connect to the new
endpoint. Only new tasks … that start running after this deployment can".

A client task runs and reaches ``first``. Then a new endpoint, ``late``, is registered in the namespace and
its task runs and is in DNS. The running client task cannot use it: its hosts file does not know the name,
its proxy's configuration (from its rollout's immutable ConfigMap) has no such endpoint, and even dialling
the address ``late`` gets in newer tasks reaches nothing. After the client is redeployed (a changed task
definition: a new ConnectDeployment and ConfigMap, a new task), the new task resolves ``late`` and reaches
it, and still reaches ``first``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.kube import CONNECT_DEPLOYMENTS, CONNECT_NAMESPACES, CONNECT_SERVICES, Kube
from sc_operator.render.vips import assign_vips
from support.operator import accepted, service_body, wait_for
from support.tasks import Harness, Task

pytestmark = pytest.mark.netns


def deploy(kube: Kube, namespace: str, body: dict[str, Any]) -> None:
    kube.create(CONNECT_SERVICES, body, namespace)
    name = body["metadata"]["name"]
    cond = wait_for(f"{name} Accepted", lambda: accepted(kube, namespace, name), timeout=60)
    assert cond["status"] == "True", cond


def served_by(task: Task, url: str) -> str:
    """The pod name the server app reports for one request from ``task`` (fails on any error)."""
    result = task.curl(url, "-f")
    if result.returncode != 0:
        hosts = Path("/etc/netns", task.netns, "hosts")
        seen = hosts.read_text() if hosts.exists() else "(no hosts file)"
        pytest.fail(f"{url} from {task.pod}: {result.stderr}\n{task.netns} hosts:\n{seen}")
    name: str = json.loads(result.stdout)["name"]
    return name


def proxy_endpoints(task: Task) -> list[str]:
    """The endpoints the task's running proxy knows (its /config)."""
    status, body = task.admin("/config")
    assert status == 200, body
    return sorted(e["name"] for e in json.loads(body)["endpoints"])


def test_running_client_keeps_its_endpoints_until_redeployed(
    kube: Kube, harness: Harness, namespace: str, connect_namespace: str
) -> None:
    deploy(kube, namespace, service_body("first", namespace, connect_namespace))
    [first] = harness.run_pods("first")
    harness.wait_dns("first", 1)
    client_body = service_body("caller", namespace, connect_namespace, serve=False)
    deploy(kube, namespace, client_body)
    [old] = harness.run_pods("caller")
    assert served_by(old, "http://first:80/") == first.pod

    # A new endpoint joins the namespace while the client runs; its task is up and in DNS.
    deploy(kube, namespace, service_body("late", namespace, connect_namespace))
    [late] = harness.run_pods("late")
    harness.wait_dns("late", 1)
    registry = kube.get(CONNECT_NAMESPACES, connect_namespace)["status"]["endpoints"]
    assert sorted(e["discoveryName"] for e in registry) == ["first", "late"]

    # The running client task cannot resolve it, and its proxy does not know it.
    assert old.run("getent", "hosts", "late").returncode == 2  # "key not found"
    result = old.curl("http://late:80/")
    assert result.returncode == 6, result  # curl: could not resolve host
    assert proxy_endpoints(old) == ["first"]
    # Nor does dialling the address newer tasks use for it: the old proxy has no such alias and closes.
    late_vip = assign_vips(
        Endpoint(discovery_name=n, dns_name=n, port=80, service=ServiceRef(namespace=namespace, name=n))
        for n in ("first", "late")
    ).addresses["late"]
    before = old.metrics().get("EgressUnknownDestinationCount", 0)
    result = old.curl(f"http://{late_vip}:80/")
    assert result.returncode != 0, result
    assert old.metrics()["EgressUnknownDestinationCount"] == before + 1
    assert served_by(old, "http://first:80/") == first.pod  # what it had still works
    [old_rollout] = kube.list(CONNECT_DEPLOYMENTS, namespace, {"serviceconnect.dev/service": "caller"})

    # Redeploy the client: a changed task definition is a new rollout with a new pinned endpoint list.
    # (A merge patch: the operator's status writes cannot make it conflict, as a stale replace could.)
    containers = client_body["spec"]["taskDefinition"]["containerDefinitions"]
    containers[0]["environment"] = [{"name": "REVISION", "value": "2"}]
    patch = {"spec": {"taskDefinition": {"containerDefinitions": containers}}}
    kube.patch(CONNECT_SERVICES, "caller", patch, namespace)

    def new_rollout() -> list[dict[str, Any]]:
        found = kube.list(CONNECT_DEPLOYMENTS, namespace, {"serviceconnect.dev/service": "caller"})
        return [d for d in found if d["metadata"]["name"] != old_rollout["metadata"]["name"]]

    [rollout] = wait_for("the client's new ConnectDeployment", new_rollout, timeout=60)
    assert sorted(e["discoveryName"] for e in rollout["spec"]["endpoints"]) == ["first", "late"]

    def new_task() -> list[Task]:
        return [t for t in harness.sync("caller") if t.pod != old.pod]

    [new] = wait_for("a client task of the new rollout", new_task, timeout=90, step=0.5)
    assert proxy_endpoints(new) == ["first", "late"]
    assert new.run("getent", "hosts", "late").stdout.split() == [late_vip, "late"]
    assert served_by(new, "http://late:80/") == late.pod
    assert served_by(new, "http://first:80/") == first.pod
