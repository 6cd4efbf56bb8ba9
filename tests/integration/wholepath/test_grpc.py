"""A gRPC call on the whole path: grpcio client in the client task → ``appProtocol: grpc`` endpoint → a real
grpcio server (``support/grpc_service.py``) in the server task, through both proxies.

The server service's port mapping says ``appProtocol: grpc``; the operator renders HTTP/2 listeners for it in
both proxies' configurations. The client resolves ``greeter`` from its hosts file only, as an application
would (grpcio's native resolver), and sees the server's reply, its trailers (which name the server task),
a server stream in order, and an error status passed through untouched.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sc_operator.kube import CONNECT_SERVICES, Kube
from support.operator import accepted, service_body, wait_for
from support.tasks import Harness
from support.wholepath_apps import call_greeter, greeter, grpc_server

pytestmark = pytest.mark.netns


def deploy(kube: Kube, namespace: str, body: dict[str, Any]) -> None:
    kube.create(CONNECT_SERVICES, body, namespace)
    name = body["metadata"]["name"]
    cond = wait_for(f"{name} Accepted", lambda: accepted(kube, namespace, name), timeout=60)
    assert cond["status"] == "True", cond


def test_grpc_call_through_client_and_server_proxies(
    kube: Kube, harness: Harness, namespace: str, connect_namespace: str
) -> None:
    harness.apps["greeter"] = grpc_server
    deploy(kube, namespace, greeter(namespace, connect_namespace))
    [server] = harness.run_pods("greeter")
    harness.wait_dns("greeter", 1)
    deploy(kube, namespace, service_body("caller", namespace, connect_namespace, serve=False))
    [client] = harness.run_pods("caller")

    result = call_greeter(client)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["reply"] == "hello through both proxies"
    # Trailers arrive intact, from the server task's own grpcio server.
    assert seen["trailers"] == {"x-served-by": server.pod, "x-trailer": "intact"}
    assert seen["stream"] == [1024, 1024, 1024]
    assert seen["error"] == ["NOT_FOUND", "asked for 5"]

    # Both proxies saw the calls as HTTP/2 requests to the endpoint (gRPC errors are HTTP 200 + grpc-status).
    egress = client.metrics()
    assert egress['RequestCountPerTarget{TargetDiscoveryName="greeter"}'] == 3
    assert egress['HTTPCode_Target_2XX_Count{TargetDiscoveryName="greeter"}'] == 3
    ingress = server.metrics()
    assert ingress['RequestCount{DiscoveryName="greeter"}'] == 3
    assert ingress['HTTPCode_2XX_Count{DiscoveryName="greeter"}'] == 3
