"""What several whole-path scenarios deploy: the seed tutorial's examples, and a gRPC service with its
server app and a client script (run inside a task)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from support.grpc_env import SERVICE_SCRIPT
from support.operator import service_body
from support.tasks import AppContext

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: The tutorial's nginx ConnectService (examples/10-nginx.yaml).
NGINX = "service-connect-nginx-service"
GRPC_PORT = 50051

# Runs inside the client task: three calls through the proxies, printed as JSON.
GRPC_CLIENT = r"""
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


def example(name: str, namespace: str, connect_ns: str) -> dict[str, Any]:
    """An examples/ ConnectService, placed in ``namespace`` and ConnectNamespace ``connect_ns``."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["serviceConnectConfiguration"]["namespace"] = connect_ns
    return doc


def grpc_server(ctx: AppContext) -> list[str]:
    """The server task's app: a real grpcio server on its containerPort, named after its pod."""
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
    """A ConnectService ``greeter`` serving ``appProtocol: grpc`` on containerPort :data:`GRPC_PORT`."""
    body = service_body("greeter", namespace, connect_ns, port=GRPC_PORT)
    container = body["spec"]["taskDefinition"]["containerDefinitions"][0]
    container["name"] = "greeter"
    container["portMappings"] = [
        {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "tcp", "appProtocol": "grpc"}
    ]
    body["spec"]["serviceConnectConfiguration"]["services"][0]["portName"] = "grpc"
    return body


def call_greeter(task: Any) -> Any:
    """Run :data:`GRPC_CLIENT` in ``task`` against ``greeter:GRPC_PORT`` (a CompletedProcess). grpcio's
    native resolver reads the task's hosts file; no HTTP proxy of this machine may interfere."""
    return task.run(
        "env", "-u", "http_proxy", "-u", "https_proxy", "-u", "grpc_proxy", "GRPC_DNS_RESOLVER=native",
        sys.executable, "-c", GRPC_CLIENT, str(EXAMPLES.parent / "tests"), f"greeter:{GRPC_PORT}",
        timeout=90,
    )  # fmt: skip
