"""The task size on the real kube-apiserver: pod-level resources where the server has them (≥ 1.34, the
PodLevelResources feature on by default), the split across containers on the oldest supported server
(`oldest_k8s`, 1.20).

Objects are sent with server-side dry run: the API server validates, defaults and runs admission exactly as
for a real create, without storing anything. The pod is sent too (not only its Deployment), because the
API server checks pod-level resources against the containers' when a pod is created.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest

from sc_operator.render import parse_server_version, render_children
from sc_operator.render.resources import POD_LEVEL_RESOURCES_VERSION
from support.render import client_inputs, make_inputs

pytestmark = pytest.mark.oldest_k8s


@pytest.fixture(scope="module")
def server_version(api_client: Any) -> tuple[int, int]:
    from kubernetes import client

    info = client.VersionApi(api_client).get_code()
    return parse_server_version(info.major, info.minor)


@pytest.fixture
def pod_namespace(api_client: Any, namespace: str) -> str:
    """The namespace with its default ServiceAccount, which pods need (created here unless a
    kube-controller-manager started by other tests already did)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api_client)
    try:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    return namespace


def _pod(deployment: dict[str, Any], namespace: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "task-size", "namespace": namespace, "labels": template["metadata"]["labels"]},
        # No token: on 1.20 a token needs the token controller, which this test does not run.
        "spec": {**copy.deepcopy(template["spec"]), "automountServiceAccountToken": False},
    }


def _create_pod(api_client: Any, pod: dict[str, Any], namespace: str) -> dict[str, Any]:
    from kubernetes import client

    # The raw response: the client's model would drop fields it does not know.
    response = client.CoreV1Api(api_client).create_namespaced_pod(
        namespace, pod, dry_run="All", _preload_content=False
    )
    stored: dict[str, Any] = json.loads(response.data)
    return stored


def _quantities(resources: dict[str, Any]) -> dict[str, dict[str, Decimal]]:
    """Resources with parsed quantities (the API server writes them canonically: 1024Mi as 1Gi)."""
    from kubernetes.utils.quantity import parse_quantity

    return {kind: {k: parse_quantity(v) for k, v in values.items()} for kind, values in resources.items()}


def _containers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


@pytest.mark.parametrize("which", ["nginx", "client"])
def test_the_task_size_is_accepted_and_kept(
    api_client: Any, pod_namespace: str, server_version: tuple[int, int], which: str
) -> None:
    namespace = pod_namespace
    inputs = (make_inputs if which == "nginx" else client_inputs)(version=server_version)
    deployment = render_children(inputs).deployment
    stored = _create_pod(api_client, _pod(deployment, namespace), namespace)["spec"]
    rendered = deployment["spec"]["template"]["spec"]
    if server_version >= POD_LEVEL_RESOURCES_VERSION:
        # Kept as rendered: the feature is on (a server with the gate off drops the field silently).
        assert _quantities(stored["resources"]) == _quantities(rendered["resources"])
        task_mib = 512 if which == "nginx" else 1024
        assert _quantities(stored["resources"])["limits"]["memory"] == task_mib * 2**20
    else:
        assert "resources" not in rendered
        assert "resources" not in stored
    # Every container's resources arrive as rendered (the split on old servers, own values on new ones);
    # the server only defaults a missing memory request to the limit, as it does for any container.
    for name, container in _containers(rendered).items():
        got = _quantities(_containers(stored)[name].get("resources", {}))
        want = _quantities(container.get("resources", {}))
        assert got.get("limits") == want.get("limits"), name
        assert want.get("requests", {}).items() <= got.get("requests", {}).items(), name


def test_the_proxy_must_fit_inside_the_task(
    api_client: Any, pod_namespace: str, server_version: tuple[int, int]
) -> None:
    """Why the proxy's request is trimmed: the API server refuses a pod whose containers request more
    than its pod-level resources (the seed's task: 250m, webserver 98m, the proxy's sized 250m)."""
    from kubernetes.client.rest import ApiException

    if server_version < POD_LEVEL_RESOURCES_VERSION:
        pytest.skip("no pod-level resources before 1.34")
    namespace = pod_namespace
    deployment = render_children(make_inputs(version=server_version)).deployment
    pod = _pod(deployment, namespace)
    proxy = _containers(pod["spec"])["sc-proxy"]
    assert proxy["resources"]["requests"]["cpu"] == "152m"
    proxy["resources"]["requests"]["cpu"] = "250m"
    with pytest.raises(ApiException) as caught:
        _create_pod(api_client, pod, namespace)
    assert caught.value.status == 422
    assert "resources" in str(caught.value.body)
