"""Fixtures for the renderer's tests: the seed tutorial's nginx service and a client-only service.

The nginx service is the Fargate CLI tutorial's (seed 002): task cpu 256 / memory 512, one container
``webserver`` (cpu 100) with portMapping ``nginx`` 80/http, maximumPercent 200, minimumHealthyPercent 0,
Service Connect on ``service-connect`` with client alias port 80. The client is a curl loop that only
consumes endpoints (no ``services``).
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]

from sc_operator.api import ConnectDeploymentSpec, ConnectServiceSpec
from sc_operator.render import RenderInputs
from sc_operator.settings import Interception, OperatorSettings

NAMESPACE = "service-connect"

NGINX_SPEC: dict[str, Any] = {
    "desiredCount": 1,
    "deploymentController": {"type": "ECS"},
    "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 0},
    "taskDefinition": {
        "family": "service-connect-nginx",
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {
                "name": "webserver",
                "image": "public.ecr.aws/docker/library/nginx:latest",
                "cpu": 100,
                "portMappings": [
                    {"name": "nginx", "containerPort": 80, "protocol": "tcp", "appProtocol": "http"}
                ],
                "essential": True,
            }
        ],
    },
    "serviceConnectConfiguration": {
        "enabled": True,
        "namespace": NAMESPACE,
        "services": [{"portName": "nginx", "clientAliases": [{"port": 80}]}],
    },
}

CLIENT_SPEC: dict[str, Any] = {
    "desiredCount": 2,
    "taskDefinition": {
        "family": "client",
        "cpu": "512",
        "memory": "1024",
        "containerDefinitions": [
            {
                "name": "curl",
                "image": "curlimages/curl:8.8.0",
                "cpu": 256,
                "memory": 256,
                "memoryReservation": 128,
                "entryPoint": ["/bin/sh", "-c"],
                "command": ["while true; do curl -s http://nginx/; sleep 5; done"],
                "environment": [{"name": "TARGET", "value": "http://nginx:80/"}, {"name": "EMPTY"}],
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -fs http://nginx/ || exit 1"],
                    "interval": 10,
                    "timeout": 3,
                    "retries": 4,
                    "startPeriod": 25,
                },
            }
        ],
    },
    "serviceConnectConfiguration": {"enabled": True, "namespace": NAMESPACE},
}


def endpoint(
    discovery: str,
    dns: str,
    port: int,
    proto: str | None,
    owner: str,
    ns: str = "default",
    port_name: str | None = None,
) -> dict[str, Any]:
    ep: dict[str, Any] = {
        "discoveryName": discovery,
        "dnsName": dns,
        "port": port,
        "service": {"namespace": ns, "name": owner},
    }
    if proto:
        ep["appProtocol"] = proto
    if port_name:
        ep["portName"] = port_name
    return ep


NGINX_ENDPOINT = endpoint("nginx", "nginx", 80, "http", "nginx")


def deployment_spec(service: str, endpoints: list[dict[str, Any]]) -> ConnectDeploymentSpec:
    return ConnectDeploymentSpec.model_validate(
        {
            "service": service,
            "taskDefinitionHash": "0123456789",
            "namespace": NAMESPACE,
            "namespaceRevision": 3,
            "endpoints": endpoints,
        }
    )


def make_inputs(
    spec: dict[str, Any] | None = None,
    *,
    name: str = "nginx",
    endpoints: list[dict[str, Any]] | None = None,
    version: tuple[int, int] = (1, 20),
    interception: Interception = "redirect",
    settings: OperatorSettings | None = None,
    services: int = 1,
    tasks: int = 1,
) -> RenderInputs:
    """RenderInputs for ``spec`` (default: nginx) with the nginx endpoint pinned unless told otherwise."""
    return RenderInputs(
        service_name=name,
        k8s_namespace="default",
        service_uid="11111111-2222-3333-4444-555555555555",
        service=ConnectServiceSpec.model_validate(copy.deepcopy(spec if spec is not None else NGINX_SPEC)),
        deployment_name=f"{name}-0123456789",
        deployment_uid="66666666-7777-8888-9999-000000000000",
        deployment=deployment_spec(name, [NGINX_ENDPOINT] if endpoints is None else endpoints),
        settings=settings or OperatorSettings(),
        server_version=version,
        interception=interception,
        namespace_services=services,
        namespace_tasks=tasks,
    )


def client_inputs(**kwargs: Any) -> RenderInputs:
    return make_inputs(CLIENT_SPEC, name="client", **kwargs)


def with_container(spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A copy of ``spec`` whose first container has ``fields`` set (None removes a field)."""
    out = copy.deepcopy(spec)
    c = out["taskDefinition"]["containerDefinitions"][0]
    for k, v in fields.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return out


def k8s_validate(obj: dict[str, Any], version: str = "1.25") -> None:
    """Validate against the Kubernetes OpenAPI schema of ``version`` in strict mode (unknown fields fail).

    1.25 is the oldest schema kubernetes-validate ships (our test API server is 1.20; the fields we render
    for it exist unchanged since 1.20); native sidecars need 1.29.
    """
    kubernetes_validate.validate(obj, version, strict=True)


def pod_spec(inputs: RenderInputs) -> dict[str, Any]:
    from sc_operator.render import render_children

    spec: dict[str, Any] = render_children(inputs).deployment["spec"]["template"]["spec"]
    return spec


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        if c["name"] == name:
            return dict(c)
    raise KeyError(name)
