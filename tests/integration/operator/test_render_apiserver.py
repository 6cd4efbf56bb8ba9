"""The rendered objects against the real kube-apiserver: accepted as rendered for its version, and why the
renderer picks the start-up gate instead of a native sidecar on servers older than 1.29.

hack/test.sh runs these against the current Kubernetes (native sidecar: an init container with
``restartPolicy: Always``) and again against the oldest supported one, 1.20 (`oldest_k8s`: the proxy as the
first container with a postStart start-up gate); each run asserts the rendering its server gets.

Objects are sent with server-side dry run: the API server validates, defaults and runs admission exactly as
for a real create, without storing anything (no controller would run them in this test).
"""

from __future__ import annotations

from typing import Any

import pytest

from sc_operator.render import NATIVE_SIDECAR_VERSION, parse_server_version, render_children
from support.render import client_inputs, make_inputs

pytestmark = pytest.mark.oldest_k8s

#: Before 1.28 an init container may not have probes (and `restartPolicy` on it is an unknown field).
INIT_CONTAINER_PROBES_VERSION = (1, 28)


@pytest.fixture(scope="module")
def server_version(api_client: Any) -> tuple[int, int]:
    from kubernetes import client

    info = client.VersionApi(api_client).get_code()
    return parse_server_version(info.major, info.minor)


def _create(api_client: Any, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """Dry-run create; returns the object as the API server would store it."""
    from kubernetes import client

    kind = obj["kind"]
    if kind == "Deployment":
        api: Any = client.AppsV1Api(api_client)
        method = api.create_namespaced_deployment
    elif kind == "Service":
        api = client.CoreV1Api(api_client)
        method = api.create_namespaced_service
    else:
        api = client.CoreV1Api(api_client)
        method = api.create_namespaced_config_map
    result = method(namespace, obj, dry_run="All")
    stored: dict[str, Any] = api_client.sanitize_for_serialization(result)
    return stored


@pytest.mark.parametrize("which", ["nginx", "client"])
def test_rendered_objects_are_accepted(
    api_client: Any, namespace: str, server_version: tuple[int, int], which: str
) -> None:
    base = make_inputs if which == "nginx" else client_inputs
    inputs = base(version=server_version)
    children = render_children(inputs)
    assert children.config_map is not None
    objects = [children.config_map, children.deployment, *children.services]
    for obj in objects:
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        stored = _create(api_client, obj, namespace)
        assert stored["metadata"]["name"] == obj["metadata"]["name"]
        if obj["kind"] == "Deployment":
            template = stored["spec"]["template"]["spec"]
            rendered = obj["spec"]["template"]["spec"]
            # Nothing we rendered was dropped as unknown by this server version.
            assert [c["name"] for c in template["containers"]] == [c["name"] for c in rendered["containers"]]
            proxy = next(
                c
                for c in [*template.get("initContainers", []), *template["containers"]]
                if c["name"] == "sc-proxy"
            )
            if server_version >= (1, 29):
                # A native sidecar: the last init container, kept running, gated by its startup probe.
                assert template["initContainers"][-1] is proxy
                assert proxy["restartPolicy"] == "Always"
                assert proxy["startupProbe"]["httpGet"]["path"] == "/ready"
                assert "lifecycle" not in proxy
                assert "sc-proxy" not in [c["name"] for c in template["containers"]]
            else:
                # The start-up gate: the first container, whose postStart waits for /ready.
                assert template["containers"][0] is proxy
                assert proxy["lifecycle"]["postStart"]["exec"]["command"][:2] == ["sc-proxy", "wait-ready"]
                assert "restartPolicy" not in proxy
                assert "startupProbe" not in proxy
                assert "sc-proxy" not in [c["name"] for c in template.get("initContainers", [])]
            assert [c["name"] for c in template.get("initContainers", [])] == [
                c["name"] for c in rendered.get("initContainers", [])
            ]
            assert template.get("hostAliases") == rendered.get("hostAliases")
        if obj["kind"] == "ConfigMap":
            assert stored["immutable"] is True
        if obj["kind"] == "Service":
            assert stored["spec"]["clusterIP"] == "None"
            assert stored["spec"]["ports"][0]["targetPort"] == obj["spec"]["ports"][0]["targetPort"]


def test_a_native_sidecar_needs_a_server_that_knows_it(
    api_client: Any, namespace: str, server_version: tuple[int, int]
) -> None:
    """Why the version decides: the native-sidecar rendering, sent to this server whatever its version.

    Before 1.28 an init container may not have probes (and its restartPolicy is unknown), so the rendering
    is refused outright and the renderer uses the start-up gate there; a newer server keeps the proxy as an
    init container with ``restartPolicy: Always`` and its startup probe."""
    from kubernetes.client.rest import ApiException

    dep = render_children(make_inputs(version=NATIVE_SIDECAR_VERSION)).deployment
    dep = {**dep, "metadata": {**dep["metadata"], "namespace": namespace}}
    if server_version < INIT_CONTAINER_PROBES_VERSION:
        with pytest.raises(ApiException) as caught:
            _create(api_client, dep, namespace)
        assert caught.value.status == 422
        assert "must not be set for init containers" in str(caught.value.body)
    else:
        stored = _create(api_client, dep, namespace)
        proxy = stored["spec"]["template"]["spec"]["initContainers"][-1]
        assert proxy["name"] == "sc-proxy"
        assert proxy["restartPolicy"] == "Always"
        assert proxy["startupProbe"]["httpGet"]["path"] == "/ready"
