"""The generated CRDs against a real kube-apiserver: installed, served, validated, printed.

What the schema refuses here is refused by the API server itself, before any operator or
webhook sees the object; the error must name the field path, in the form the server's version
uses. hack/test.sh runs these against the current Kubernetes and again against the oldest
supported one, 1.20 (`oldest_k8s`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from support.envtest import REPO, KubeAPI
from support.kubectl import Kubectl

pytestmark = pytest.mark.oldest_k8s

GROUP, VERSION = "serviceconnect.dev", "v1alpha1"
KINDS = {
    "connectnamespaces.serviceconnect.dev": ("ConnectNamespace", "cns", "Cluster"),
    "connectservices.serviceconnect.dev": ("ConnectService", "csvc", "Namespaced"),
    "connectdeployments.serviceconnect.dev": ("ConnectDeployment", "cdep", "Namespaced"),
}


def nginx_service(name: str = "nginx") -> dict[str, Any]:
    """The tutorial's nginx ConnectService from examples/, renamed and without a namespace."""
    doc = yaml.safe_load((REPO / "examples" / "10-nginx.yaml").read_text())
    doc["metadata"] = {"name": name}
    return dict(doc)


def table(out: str) -> list[dict[str, str]]:
    """Parse `kubectl get` output by the header's column offsets (empty cells stay empty)."""
    header, *rows = out.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{n: row[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for row in rows]


def without_indices(path: str) -> str:
    return re.sub(r"\[\d+\]", "", path)


@pytest.fixture(scope="module")
def field_path(kube_api: KubeAPI) -> Callable[[str], str]:
    """How this server names a field in a schema error.

    kube-apiserver 1.20 (the oldest supported) leaves out list indices, a.b[0].c is a.b.c; v1.37 (the
    current) keeps them. The versions in between are not run here, so only those two are told apart.
    """
    if kube_api.version <= (1, 20):
        return without_indices
    return lambda path: path


def _create(api_client: Any, namespace: str, body: dict[str, Any]) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "connectservices", body
    )


def test_generated_crds_install_and_are_served(crds_installed: list[str], kubectl: Kubectl) -> None:
    assert sorted(crds_installed) == sorted(KINDS)
    rows = kubectl("api-resources", f"--api-group={GROUP}", "--no-headers").splitlines()
    served = {row.split()[0]: row.split() for row in rows}
    for kind, short, scope in KINDS.values():
        plural = kind.lower() + "s"
        assert plural in served, f"{plural} not served; api-resources said:\n" + "\n".join(rows)
        row = served[plural]
        assert short in row[1].split(","), row
        assert row[-2] == str(scope == "Namespaced").lower(), row
        assert row[-1] == kind, row


BAD_SPECS: dict[str, tuple[Callable[[dict[str, Any]], None], str, str]] = {
    # id: (how to break the nginx example, the field path the error must name, the rule)
    "discoveryName with bad characters": (
        lambda s: s["serviceConnectConfiguration"]["services"][0].update(discoveryName="Nginx.Web!"),
        "spec.serviceConnectConfiguration.services[0].discoveryName",
        "should match",
    ),
    "discoveryName starting with -": (
        lambda s: s["serviceConnectConfiguration"]["services"][0].update(discoveryName="-nginx"),
        "spec.serviceConnectConfiguration.services[0].discoveryName",
        "should match",
    ),
    "discoveryName of 65 characters": (
        lambda s: s["serviceConnectConfiguration"]["services"][0].update(discoveryName="n" * 65),
        "spec.serviceConnectConfiguration.services[0].discoveryName",
        "64",
    ),
    "containerPort 70000": (
        lambda s: s["taskDefinition"]["containerDefinitions"][0]["portMappings"][0].update(
            containerPort=70000
        ),
        "spec.taskDefinition.containerDefinitions[0].portMappings[0].containerPort",
        "65535",
    ),
    "client alias port 70000": (
        lambda s: s["serviceConnectConfiguration"]["services"][0]["clientAliases"][0].update(port=70000),
        "spec.serviceConnectConfiguration.services[0].clientAliases[0].port",
        "65535",
    ),
    "missing portName": (
        lambda s: s["serviceConnectConfiguration"]["services"][0].pop("portName"),
        "spec.serviceConnectConfiguration.services[0].portName",
        "Required value",
    ),
    "dnsName of 128 characters": (
        lambda s: s["serviceConnectConfiguration"]["services"][0]["clientAliases"][0].update(
            dnsName="a" * 128
        ),
        "spec.serviceConnectConfiguration.services[0].clientAliases[0].dnsName",
        "127",
    ),
    "appProtocol http3": (
        lambda s: s["taskDefinition"]["containerDefinitions"][0]["portMappings"][0].update(
            appProtocol="http3"
        ),
        "spec.taskDefinition.containerDefinitions[0].portMappings[0].appProtocol",
        "Unsupported value",
    ),
    "perRequestTimeoutSeconds above 2147483647": (
        lambda s: s["serviceConnectConfiguration"]["services"][0].update(
            timeout={"perRequestTimeoutSeconds": 2147483648}
        ),
        "spec.serviceConnectConfiguration.services[0].timeout.perRequestTimeoutSeconds",
        "2147483647",
    ),
    "unknown deploymentController type": (
        lambda s: s["deploymentController"].update(type="BLUE_GREEN"),
        "spec.deploymentController.type",
        "Unsupported value",
    ),
    "networkMode nat": (
        lambda s: s["taskDefinition"].update(networkMode="nat"),
        "spec.taskDefinition.networkMode",
        "Unsupported value",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_schema_refuses_out_of_range_fields_naming_the_path(
    case: str,
    crds_installed: list[str],
    api_client: Any,
    namespace: str,
    field_path: Callable[[str], str],
) -> None:
    from kubernetes.client import ApiException

    breaker, path, rule = BAD_SPECS[case]
    body = nginx_service()
    breaker(body["spec"])
    with pytest.raises(ApiException) as info:
        _create(api_client, namespace, body)
    assert info.value.status == 422, info.value.body
    message = json.loads(info.value.body)["message"]
    assert f"{field_path(path)}:" in message, message
    assert rule in message, message


def test_schema_accepts_the_edge_values(crds_installed: list[str], api_client: Any, namespace: str) -> None:
    body = nginx_service("edges")
    spec = body["spec"]
    svc = spec["serviceConnectConfiguration"]["services"][0]
    svc.update(discoveryName="_" + "a" * 63, timeout={"perRequestTimeoutSeconds": 2147483647})
    svc["clientAliases"][0].update(port=65535, dnsName="a" * 127)
    spec["taskDefinition"]["containerDefinitions"][0]["portMappings"][0].update(containerPort=65535)
    # CODE_DEPLOY passes the schema on purpose: the operator refuses it with the ECS rule.
    spec["deploymentController"]["type"] = "CODE_DEPLOY"
    created = _create(api_client, namespace, body)
    assert created["spec"]["serviceConnectConfiguration"]["services"][0]["clientAliases"][0]["port"] == 65535


def test_kubectl_shows_the_refusal_with_the_field_path(
    crds_installed: list[str], kubectl: Kubectl, namespace: str, field_path: Callable[[str], str]
) -> None:
    body = nginx_service()
    body["spec"]["serviceConnectConfiguration"]["services"][0]["discoveryName"] = "Bad.Name"
    result = kubectl.run(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert result.returncode != 0
    path = field_path("spec.serviceConnectConfiguration.services[0].discoveryName")
    assert f"{path}:" in result.stderr, result.stderr


def test_status_subresource_and_printer_columns(
    crds_installed: list[str], api_client: Any, kubectl: Kubectl, namespace: str
) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    created = _create(api_client, namespace, nginx_service("web"))
    generation = created["metadata"]["generation"]

    # A status write that also tries to change the spec: the status lands, the spec does not.
    patched = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "connectservices",
        "web",
        {
            "spec": {"desiredCount": 7},
            "status": {
                "runningCount": 1,
                "namespace": "service-connect",
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": "True",
                        "reason": "Valid",
                        "message": "accepted",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            },
        },
    )
    assert patched["spec"]["desiredCount"] == 1
    assert patched["status"]["runningCount"] == 1
    assert patched["metadata"]["generation"] == generation

    # And a spec write through the main resource does not touch status.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "connectservices", "web", {"spec": {"desiredCount": 2}, "status": {}}
    )
    current = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "connectservices", "web")
    assert current["spec"]["desiredCount"] == 2
    assert current["status"]["runningCount"] == 1
    assert current["metadata"]["generation"] == generation + 1

    out = kubectl("get", "csvc", "web", "-n", namespace)
    (row,) = table(out)
    assert list(row) == ["NAME", "DESIRED", "RUNNING", "ROLLOUT", "CONNECTNAMESPACE", "ACCEPTED", "AGE"], out
    assert row["NAME"] == "web"
    assert (row["DESIRED"], row["RUNNING"], row["ROLLOUT"]) == ("2", "1", ""), out
    assert (row["CONNECTNAMESPACE"], row["ACCEPTED"]) == ("service-connect", "True"), out

    # The PRIMARY deployment's rollout state fills the ROLLOUT column.
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "connectservices",
        "web",
        {
            "status": {
                "deployments": [
                    {"name": "web-old", "status": "ACTIVE", "rolloutState": "COMPLETED"},
                    {"name": "web-new", "status": "PRIMARY", "rolloutState": "IN_PROGRESS"},
                ]
            }
        },
    )
    (row,) = table(kubectl("get", "csvc", "web", "-n", namespace))
    assert row["ROLLOUT"] == "IN_PROGRESS"


def test_connectnamespace_is_cluster_scoped_and_listed(
    crds_installed: list[str], kubectl: Kubectl, api_client: Any
) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(api_client)
    name = "printer-columns-test"
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "connectnamespaces",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ConnectNamespace",
            "metadata": {"name": name},
            "spec": {},
        },
    )
    try:
        custom.patch_cluster_custom_object_status(
            GROUP, VERSION, "connectnamespaces", name, {"status": {"endpointCount": 3, "revision": 5}}
        )
        out = kubectl("get", "cns", name)
        (row,) = table(out)
        assert (row["NAME"], row["ENDPOINTS"]) == (name, "3"), out
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "connectnamespaces", name)
