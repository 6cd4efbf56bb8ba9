"""A gRPC call on the whole path: grpcio client in the client task → ``appProtocol: grpc`` endpoint → a real
grpcio server (``support/grpc_service.py``) in the server task, through both proxies.

The server service's port mapping says ``appProtocol: grpc``; the operator renders HTTP/2 listeners for it in
both proxies' configurations. The client resolves ``greeter`` from its hosts file only, as an application
would (grpcio's native resolver), and sees the server's reply, its trailers (which name the server task),
a server stream in order, and an error status passed through untouched.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from sc_operator.kube import CONNECT_SERVICES, Kube
from support.grpc_env import SERVICE_SCRIPT
from support.operator import accepted, service_body, wait_for
from support.tasks import AppContext, Harness

pytestmark = pytest.mark.netns

TESTS_DIR = Path(__file__).resolve().parents[2]
PORT = 50051

# Runs inside the client task: three calls through the proxies, printed as JSON.
CLIENT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import grpc
from support.grpc_service import Client

client = Client(sys.argv[2])
out = {}
reply, call = client.unary.with_call(b"hello through both proxies", timeout=20)
out["reply"] = reply.decode()
out["trailers"] = dict(call.trailing_metadata())
out["stream"] = [len(m) for m in client.server_stream(b"3 1024 0", timeout=20)]
try:
    client.unary(b"x", metadata=(("x-status", "5"),), timeout=20)
except grpc.RpcError as err:
    out["error"] = [err.code().name, err.details()]
client.close()
print(json.dumps(out))
"""


def deploy(kube: Kube, namespace: str, body: dict[str, Any]) -> None:
    kube.create(CONNECT_SERVICES, body, namespace)
    name = body["metadata"]["name"]
    cond = wait_for(f"{name} Accepted", lambda: accepted(kube, namespace, name), timeout=60)
    assert cond["status"] == "True", cond


def grpc_server(ctx: AppContext) -> list[str]:
    # The server task's app: a real grpcio server on its containerPort, named after its pod.
    assert ctx.port is not None
    return [
        sys.executable,
        str(SERVICE_SCRIPT),
        "--address",
        "0.0.0.0",
        "--port",
        str(ctx.port),
        "--name",
        ctx.task.pod,
    ]


def greeter(namespace: str, connect_ns: str) -> dict[str, Any]:
    body = service_body("greeter", namespace, connect_ns, port=PORT)
    container = body["spec"]["taskDefinition"]["containerDefinitions"][0]
    container["name"] = "greeter"
    container["portMappings"] = [
        {"name": "grpc", "containerPort": PORT, "protocol": "tcp", "appProtocol": "grpc"}
    ]
    body["spec"]["serviceConnectConfiguration"]["services"][0]["portName"] = "grpc"
    return body


def test_grpc_call_through_client_and_server_proxies(
    kube: Kube, harness: Harness, namespace: str, connect_namespace: str
) -> None:
    harness.apps["greeter"] = grpc_server
    deploy(kube, namespace, greeter(namespace, connect_namespace))
    [server] = harness.run_pods("greeter")
    harness.wait_dns("greeter", 1)
    deploy(kube, namespace, service_body("caller", namespace, connect_namespace, serve=False))
    [client] = harness.run_pods("caller")

    # grpcio's native resolver reads the task's hosts file; no HTTP proxy of this machine may interfere.
    result = client.run(
        "env",
        "-u",
        "http_proxy",
        "-u",
        "https_proxy",
        "-u",
        "grpc_proxy",
        "GRPC_DNS_RESOLVER=native",
        sys.executable,
        "-c",
        CLIENT,
        str(TESTS_DIR),
        f"greeter:{PORT}",
        timeout=90,
    )
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
