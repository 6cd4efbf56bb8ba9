"""TLS between the proxies on the whole path: the seed tutorial with ``tls`` on nginx's service, and a gRPC
service with ``tls``; the bytes between the two tasks are captured and read.

The real operator issues the leaf certificate (its ConnectNamespace's own CA, ``issuerCertificateAuthority:
{}``) into a Secret and the CA bundle into a ConfigMap on the real API server, and renders their volumes and
the proxies' ``tls`` blocks; the harness mounts those volumes at the rendered paths as the kubelet would
(``support.tasks``: a mount namespace per proxy). A raw packet tap in the hub namespace
(``support.packettap``) records every TCP segment that enters the bridge; the connections from the client
task to the server task's containerPort are reassembled and must be TLS records from the first byte (a
handshake record opening each direction, application data after), with no plaintext HTTP in them. As a
control, the same tap sees a plaintext request crossing: the hub's own ``GET /ready`` to the server task.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sc_operator.kube import CONNECT_SERVICES, Kube
from support.operator import accepted, service_body, wait_for
from support.packettap import PacketTap, Stream, record_bytes, tls_records
from support.tasks import Harness, Task, http_get, in_netns
from support.wholepath_apps import GRPC_PORT, NGINX, call_greeter, example, greeter, grpc_server

pytestmark = pytest.mark.netns

TLS: dict[str, Any] = {"issuerCertificateAuthority": {}}
HANDSHAKE, APPLICATION_DATA = 22, 23


def with_tls(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["spec"]["serviceConnectConfiguration"]["services"][0]["tls"] = copy.deepcopy(TLS)
    return body


def deploy(kube: Kube, namespace: str, body: dict[str, Any]) -> None:
    kube.create(CONNECT_SERVICES, body, namespace)
    name = body["metadata"]["name"]
    cond = wait_for(f"{name} Accepted", lambda: accepted(kube, namespace, name), timeout=60)
    assert cond["status"] == "True", cond


def assert_tls_only(tap: PacketTap, client: Task, server: Task, port: int, plaintext: list[bytes]) -> str:
    """Every captured connection from the client task to ``server:port`` is TLS from the first byte in both
    directions and carries none of ``plaintext``; returns a summary of what was captured."""
    streams = [s for s in tap.streams((server.address, port)) if s.client[0] == client.address]
    assert streams, f"the tap saw no connection {client.address} -> {server.address}:{port}"
    summary = []
    for stream in streams:
        summary.append(check_stream(stream, plaintext))
    return "; ".join(summary)


def check_stream(stream: Stream, plaintext: list[bytes]) -> str:
    for word in plaintext:
        assert word not in stream.to_server, (word, stream.client)
        assert word not in stream.to_client, (word, stream.client)
    up, down = tls_records(stream.to_server), tls_records(stream.to_client)
    # The first bytes each way are a TLS handshake record (ClientHello; ServerHello), 0x16 0x03 ...
    assert stream.to_server[:2] == b"\x16\x03", stream.to_server[:80]
    assert stream.to_client[:2] == b"\x16\x03", stream.to_client[:80]
    # ...and the whole stream is TLS records: nothing in between is anything else.
    # (The tap may stop inside the last record: a record header with part of its body may remain.)
    for data, records in ((stream.to_server, up), (stream.to_client, down)):
        rest = data[record_bytes(records) :]
        assert not rest or tls_records(rest + bytes(1 << 15))[:1], rest[:80]
    # TLS 1.3: after the hellos everything is application_data records (the encrypted handshake, then data).
    assert [r.content_type for r in up][:1] == [HANDSHAKE]
    assert APPLICATION_DATA in {r.content_type for r in up}
    assert [r.content_type for r in down][:1] == [HANDSHAKE]
    assert APPLICATION_DATA in {r.content_type for r in down}
    return (
        f"{stream.client[0]}:{stream.client[1]}: {len(stream.to_server)} B / {len(up)} records up, "
        f"{len(stream.to_client)} B / {len(down)} records down"
    )


def plaintext_control(tap_server: Task, harness: Harness) -> None:
    """The hub probes the server task's /ready in plaintext: proof the tap sees plaintext when it crosses."""
    status, _ = in_netns(
        harness.network.hub, lambda: http_get(tap_server.address, tap_server.admin_port, "/ready", timeout=5)
    )
    assert status == 200


def test_tutorial_with_tls_encrypts_the_bytes_between_the_proxies(
    kube: Kube, harness: Harness, namespace: str, connect_namespace: str
) -> None:
    deploy(kube, namespace, with_tls(example("10-nginx.yaml", namespace, connect_namespace)))
    [server] = harness.run_pods(NGINX)
    harness.wait_dns("nginx", 1)
    deploy(kube, namespace, example("20-client.yaml", namespace, connect_namespace))
    [client] = harness.run_pods("client")

    # What the operator rendered, used unchanged: the server's listener serves TLS, the client's pinned
    # endpoint originates it, naming the mounted files.
    [listener] = server.config["ingress"]
    assert listener["tls"]["certFile"].startswith("/var/run/serviceconnect/tls/")
    [endpoint] = [e for e in client.config["endpoints"] if e["name"] == "nginx"]
    assert endpoint["tls"]["serverName"] == "nginx"
    assert endpoint["tls"]["caFile"] == f"/var/run/serviceconnect/ca/{connect_namespace}/ca.crt"

    with PacketTap(harness.network.hub, max_seconds=60) as tap:
        results = [client.curl("http://nginx:80/", "-i") for _ in range(3)]
        plaintext_control(server, harness)
        # Wait until the tap has read the last response's bytes and the probe's answer (it reads in its
        # own thread).
        wait_for(
            "the responses on the tap",
            lambda: (
                (
                    sum(s.to_client.count(b"\x17\x03\x03") for s in tap.streams((server.address, 80))) >= 3
                    and any(
                        s.to_client.startswith(b"HTTP/1.1 200")
                        for s in tap.streams((server.address, server.admin_port))
                    )
                )
                or None
            ),
            timeout=10,
        )
    for result in results:
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("HTTP/1.1 200"), result.stdout
        assert "<h1>Welcome to nginx!</h1>" in result.stdout

    summary = assert_tls_only(
        tap, client, server, 80, [b"GET /", b"HTTP/1.1", b"Welcome to nginx", server.pod.encode()]
    )
    # The control: the hub's plaintext probe crossed the same bridge and the tap read it.
    probes = tap.streams((server.address, server.admin_port))
    assert any(b"GET /ready HTTP/1.1" in s.to_server for s in probes), "the tap missed a plaintext request"
    assert any(s.to_client.startswith(b"HTTP/1.1 200") for s in probes), "the tap missed a plaintext answer"
    print(f"tap: {tap.frames} frames, {tap.payload_bytes} payload bytes; nginx over TLS: {summary}")

    # Both proxies counted the requests, and no TLS negotiation failed.
    egress, ingress = client.metrics(), server.metrics()
    assert egress['RequestCountPerTarget{TargetDiscoveryName="nginx"}'] == 3
    assert ingress['HTTPCode_2XX_Count{DiscoveryName="nginx"}'] == 3
    assert not [k for k, v in {**egress, **ingress}.items() if "TLSNegotiationErrorCount" in k and v]


def test_grpc_with_tls_encrypts_the_bytes_between_the_proxies(
    kube: Kube, harness: Harness, namespace: str, connect_namespace: str
) -> None:
    harness.apps["greeter"] = grpc_server
    deploy(kube, namespace, with_tls(greeter(namespace, connect_namespace)))
    [server] = harness.run_pods("greeter")
    harness.wait_dns("greeter", 1)
    deploy(kube, namespace, service_body("caller", namespace, connect_namespace, serve=False))
    [client] = harness.run_pods("caller")
    [endpoint] = [e for e in client.config["endpoints"] if e["name"] == "greeter"]
    assert endpoint["tls"]["serverName"] == "greeter"

    with PacketTap(harness.network.hub, max_seconds=90) as tap:
        result = call_greeter(client)
        tap.settle()  # the calls are over: until the tap has read their last bytes
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["reply"] == "hello through both proxies"
    assert seen["trailers"] == {"x-served-by": server.pod, "x-trailer": "intact"}
    assert seen["error"] == ["NOT_FOUND", "asked for 5"]

    # No HTTP/2 connection preface, no gRPC path or message in clear between the proxies.
    summary = assert_tls_only(
        tap,
        client,
        server,
        GRPC_PORT,
        [b"PRI * HTTP/2.0", b"hello through both proxies", b"x-served-by", b"/greeter."],
    )
    print(f"tap: {tap.frames} frames, {tap.payload_bytes} payload bytes; gRPC over TLS: {summary}")
    assert server.metrics()['HTTPCode_2XX_Count{DiscoveryName="greeter"}'] == 3
