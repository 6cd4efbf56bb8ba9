"""The ConnectService's ``timeout`` block on the wire, through the client's and the server's proxies.

The server service sets ``perRequestTimeoutSeconds: 2`` and ``idleTimeoutSeconds: 4`` (defaults: 15 s and
300 s). The operator carries them into both rendered proxy configurations (the server's ingress, and the
endpoint pinned in the client's ConfigMap); the harness runs both tasks in network namespaces. A client in
the client task then sees: the app told how long it has (``x-envoy-expected-rq-timeout-ms: 2000``), a slow
answer cut off with 504 after about 2 s instead of 15, and its idle keep-alive connection closed after
about 4 s instead of 5 minutes, while a connection idle for less stays usable.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from sc_operator.kube import CONNECT_SERVICES, Kube
from support.operator import accepted, service_body, wait_for
from support.tasks import Harness

pytestmark = pytest.mark.netns

PER_REQUEST, IDLE = 2, 4

# Runs inside the client task: one keep-alive connection to host:port, a request, a pause shorter than the
# idle timeout, a second request on the same socket, then how long until the proxy closes it.
IDLE_PROBE = r"""
import json, re, socket, sys, time

host, port, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sock = socket.create_connection((host, port), timeout=30)

def exchange():
    sock.sendall(b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return "closed"
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if length:
        while len(body) < int(length.group(1)):
            body += sock.recv(65536)
    else:  # chunked
        while not body.endswith(b"0\r\n\r\n"):
            body += sock.recv(65536)
    return head.split(b"\r\n", 1)[0].decode()

first = exchange()
time.sleep(pause)
second = exchange()
idle_from = time.monotonic()
try:
    eof = sock.recv(1) == b""
except ConnectionResetError:
    eof = True
closed_after = time.monotonic() - idle_from
print(json.dumps({"first": first, "second": second, "eof": eof, "closed_after": closed_after}))
"""


def deploy(kube: Kube, namespace: str, body: dict[str, Any]) -> None:
    kube.create(CONNECT_SERVICES, body, namespace)
    name = body["metadata"]["name"]
    cond = wait_for(f"{name} Accepted", lambda: accepted(kube, namespace, name), timeout=60)
    assert cond["status"] == "True", cond


def test_per_request_and_idle_timeouts_from_the_spec_apply_on_the_wire(
    kube: Kube, harness: Harness, namespace: str, connect_namespace: str
) -> None:
    server_body = service_body("slow", namespace, connect_namespace, port=80)
    server_body["spec"]["serviceConnectConfiguration"]["services"][0]["timeout"] = {
        "perRequestTimeoutSeconds": PER_REQUEST,
        "idleTimeoutSeconds": IDLE,
    }
    deploy(kube, namespace, server_body)
    [server] = harness.run_pods("slow")
    harness.wait_dns("slow", 1)
    deploy(kube, namespace, service_body("caller", namespace, connect_namespace, serve=False))
    [client] = harness.run_pods("caller")
    # The running client proxy holds the server's timeouts for the endpoint, not the defaults.
    status, body = client.admin("/config")
    assert status == 200, body
    [pinned] = [e for e in json.loads(body)["endpoints"] if e["name"] == "slow"]
    assert pinned["timeouts"] == {"perRequestTimeoutSeconds": PER_REQUEST, "idleTimeoutSeconds": IDLE}

    # The app behind the server proxy is told the deadline, as Envoy tells it.
    result = client.curl("http://slow:80/")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["name"] == server.pod
    assert seen["headers"]["x-envoy-expected-rq-timeout-ms"] == str(PER_REQUEST * 1000)

    # A slow answer (6 s) is cut off with 504 after about perRequestTimeoutSeconds, not the default 15 s.
    result = client.curl("http://slow:80/delay/6000", "-o", "/dev/null", "-w", "%{http_code} %{time_total}")
    assert result.returncode == 0, result.stderr
    code, seconds = result.stdout.split()
    assert code == "504"
    # Generous bounds for a loaded machine; what matters is 2 s rather than 6 s (the app) or 15 s (default).
    assert PER_REQUEST - 0.5 <= float(seconds) < 5.5, seconds
    # Both proxies enforce it (the client's from the endpoint pinned in its ConfigMap); whichever fires
    # first cuts the request off and counts it.
    cut = client.metrics()['TargetTimeoutCount{TargetDiscoveryName="slow"}']
    cut += server.metrics()['TimeoutCount{DiscoveryName="slow"}']
    assert cut >= 1

    # Idle keep-alive connections close after idleTimeoutSeconds; one idle for less is still served.
    probe = client.run(sys.executable, "-c", IDLE_PROBE, "slow", "80", str(IDLE / 4), timeout=60)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["first"].startswith("HTTP/1.1 200"), seen
    assert seen["second"].startswith("HTTP/1.1 200"), seen  # same socket, idle for IDLE / 4
    assert seen["eof"], seen
    assert IDLE - 0.5 <= seen["closed_after"] < IDLE + 6, seen
