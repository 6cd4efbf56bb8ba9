"""gRPC through two real ``sc-proxy`` processes: grpcio client → client proxy (egress, alias) → server proxy
(ingress) → grpcio server process, all on loopback. Every RPC kind, trailers, deadlines, timeouts, a task
killed mid-stream, drain."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from support.grpc_env import VIP, GrpcServer, client_config, endpoint, server_config
from support.grpc_service import Client
from support.proxy import ProxyProcess

MiB = 1024 * 1024


class TwoHops:
    """grpc servers, one server proxy per server (its ingress), one client proxy in front of them all."""

    def __init__(
        self,
        tmp: Path,
        start_proxy: Callable[..., ProxyProcess],
        servers: int = 1,
        client_extra: dict[str, Any] | None = None,
        ingress_extra: dict[str, Any] | None = None,
    ) -> None:
        self.servers = [
            GrpcServer(f"task{i}", f"127.0.0.{31 + i}", tmp / f"grpc{i}.log") for i in range(servers)
        ]
        self.server_proxies: list[ProxyProcess] = []
        hosts = []
        for i, srv in enumerate(self.servers):
            cfg, port = server_config("echo", (srv.host, srv.port), **(ingress_extra or {}))
            self.server_proxies.append(start_proxy(cfg, name=f"server{i}"))
            hosts.append(("127.0.0.1", port))
        cfg, ports = client_config([endpoint("echo", hosts, **(client_extra or {}))])
        self.client_proxy = start_proxy(cfg, name="client")
        self.client = Client(f"{VIP}:{ports['echo']}")

    def close(self) -> None:
        self.client.close()
        for srv in self.servers:
            srv.kill()


@pytest.fixture
def hops(tmp_path: Path, start_proxy: Callable[..., ProxyProcess]) -> Iterator[Callable[..., TwoHops]]:
    made: list[TwoHops] = []

    def make(**kw: Any) -> TwoHops:
        h = TwoHops(tmp_path, start_proxy, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def test_unary_keeps_trailers_and_counts_grpc_requests(hops: Callable[..., TwoHops]) -> None:
    h = hops()
    reply, call = h.client.unary.with_call(b"hello", timeout=10)
    assert reply == b"hello"
    trailers = dict(call.trailing_metadata())
    assert trailers["x-trailer"] == "intact"
    assert trailers["x-served-by"] == "task0"
    assert call.code() == grpc.StatusCode.OK
    for _ in range(9):
        assert h.client.unary(b"x" * 1000, timeout=10) == b"x" * 1000
    server = h.server_proxies[0]
    assert server.metric("GrpcRequestCount", DiscoveryName="echo") == 10
    assert server.metric("RequestCount", DiscoveryName="echo") == 10
    assert h.client_proxy.metric("RequestCountPerTarget", TargetDiscoveryName="echo") == 10
    assert h.client_proxy.metric("GrpcCode_Target_OK_Count", TargetDiscoveryName="echo") == 10
    assert h.client_proxy.metric("HTTPCode_Target_2XX_Count", TargetDiscoveryName="echo") == 10


def test_error_status_travels_in_trailers(hops: Callable[..., TwoHops]) -> None:
    h = hops()
    with pytest.raises(grpc.RpcError) as err:
        h.client.unary(b"x", metadata=(("x-status", "5"),), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "asked for 5"
    assert h.client_proxy.metric("GrpcCode_Target_ClientError_Count", TargetDiscoveryName="echo") == 1


def test_server_streaming_large_messages(hops: Callable[..., TwoHops]) -> None:
    h = hops()
    call = h.client.server_stream(b"12 1048576 0", timeout=30)
    sizes = []
    for i, msg in enumerate(call):
        assert msg == bytes([i % 256]) * MiB
        sizes.append(len(msg))
    assert sizes == [MiB] * 12
    assert dict(call.trailing_metadata())["x-trailer"] == "intact"


def test_client_streaming(hops: Callable[..., TwoHops]) -> None:
    h = hops()
    msgs = [bytes([i]) * (300_000 + i) for i in range(20)]
    reply = h.client.client_stream(iter(msgs), timeout=30)
    assert reply == f"20 {sum(len(m) for m in msgs)}".encode()


def test_bidirectional_streaming_4_mib_messages(hops: Callable[..., TwoHops]) -> None:
    h = hops()
    msgs = [hashlib.sha256(bytes([i])).digest() * (4 * MiB // 32) for i in range(6)]
    got = list(h.client.bidi(iter(msgs), timeout=60))
    assert len(got) == 6
    assert all(a == b for a, b in zip(got, msgs, strict=True))
    assert len(got[0]) == 4 * MiB
