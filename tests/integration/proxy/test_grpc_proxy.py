"""gRPC through two real ``sc-proxy`` processes: grpcio client → client proxy (egress, alias) → server proxy
(ingress) → grpcio server process, all on loopback. Every RPC kind, trailers, deadlines, timeouts, a task
killed mid-stream, drain. Representative tests also run with TLS 1.3 between the proxies (``tls``): the
same behaviour is expected over TLS as in plaintext."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from support.grpc_env import VIP, GrpcServer, client_config, endpoint, server_config
from support.grpc_service import Client
from support.meshtls import Pki
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
        tls: bool = False,
    ) -> None:
        client_extra, ingress_extra = dict(client_extra or {}), dict(ingress_extra or {})
        if tls:
            # One certificate for every task (its SANs name the endpoint), trusted through the CA bundle.
            pki = Pki(tmp)
            client_extra["tls"] = pki.endpoint_tls()
            ingress_extra["tls"] = pki.ingress_tls()
        self.servers = [
            GrpcServer(f"task{i}", f"127.0.0.{31 + i}", tmp / f"grpc{i}.log") for i in range(servers)
        ]
        self.server_proxies: list[ProxyProcess] = []
        hosts = []
        for i, srv in enumerate(self.servers):
            cfg, port = server_config("echo", (srv.host, srv.port), **ingress_extra)
            self.server_proxies.append(start_proxy(cfg, name=f"server{i}"))
            hosts.append(("127.0.0.1", port))
        cfg, ports = client_config([endpoint("echo", hosts, **client_extra)])
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


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_unary_keeps_trailers_and_counts_grpc_requests(hops: Callable[..., TwoHops], tls: bool) -> None:
    h = hops(tls=tls)
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


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_bidirectional_streaming_4_mib_messages(hops: Callable[..., TwoHops], tls: bool) -> None:
    h = hops(tls=tls)
    msgs = [hashlib.sha256(bytes([i])).digest() * (4 * MiB // 32) for i in range(6)]
    got = list(h.client.bidi(iter(msgs), timeout=60))
    assert len(got) == 6
    assert all(a == b for a, b in zip(got, msgs, strict=True))
    assert len(got[0]) == 4 * MiB


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_client_deadline_ends_the_call_and_cancels_upstream(hops: Callable[..., TwoHops], tls: bool) -> None:
    h = hops(tls=tls)
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        h.client.unary(b"x", metadata=(("x-sleep-ms", "3000"),), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 2.5  # well before the server would answer (3 s)
    # The client's RST_STREAM went through; the proxies did not time anything out themselves.
    assert h.client_proxy.metric("TargetTimeoutCount", TargetDiscoveryName="echo") == 0
    assert h.client.unary(b"after", timeout=10) == b"after"


def test_per_request_timeout_answers_deadline_exceeded(hops: Callable[..., TwoHops]) -> None:
    h = hops(client_extra={"timeouts": {"perRequestTimeoutSeconds": 0.5}})
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        h.client.unary(b"x", metadata=(("x-sleep-ms", "3000"),), timeout=10)
    elapsed = time.monotonic() - t0
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert err.value.details() == "upstream request timeout"
    assert 0.4 < elapsed < 2.5
    assert h.client_proxy.metric("TargetTimeoutCount", TargetDiscoveryName="echo") == 1
    assert h.client_proxy.metric("GrpcCode_Target_ServerError_Count", TargetDiscoveryName="echo") == 1


def test_per_request_timeout_during_a_response_stream(hops: Callable[..., TwoHops]) -> None:
    # Headers and some messages already went to the client: the status comes in trailers.
    h = hops(client_extra={"timeouts": {"perRequestTimeoutSeconds": 0.6}})
    got: list[bytes] = []
    call = h.client.server_stream(b"30 10 100", timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        got.extend(call)  # keeps what arrived before the error
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 2 <= len(got) < 30


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_task_killed_mid_stream_gives_unavailable_then_calls_go_to_the_other(
    hops: Callable[..., TwoHops], tls: bool
) -> None:
    h = hops(servers=2, tls=tls)
    call = h.client.server_stream(b"200 1000 50", timeout=30)
    serving = dict(call.initial_metadata())["x-served-by"]
    for _ in range(3):
        next(call)
    victim = next(s for s in h.servers if s.name == serving)
    victim.kill()
    with pytest.raises(grpc.RpcError) as err:
        for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    survivors = set()
    for i in range(10):
        reply, c = h.client.unary.with_call(f"later-{i}".encode(), timeout=10)
        assert reply == f"later-{i}".encode()
        survivors.add(dict(c.trailing_metadata())["x-served-by"])
    assert survivors == {"task0", "task1"} - {serving}
    # The calls that met the dead task were retried: trailers-only UNAVAILABLE from its server proxy.
    assert h.client_proxy.metric("TargetRetryCount", TargetDiscoveryName="echo") >= 1


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_concurrent_calls_share_multiplexed_connections(hops: Callable[..., TwoHops], tls: bool) -> None:
    h = hops(tls=tls)
    results: list[bytes] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(10):
            r = h.client.unary(f"{n}-{i}".encode(), timeout=20)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == sorted(f"{n}-{i}".encode() for n in range(8) for i in range(10))
    # One client connection from grpcio; the server proxy needs no more than one upstream connection.
    assert h.client_proxy.metric("TargetNewConnectionCount", TargetDiscoveryName="echo") == 1
    assert h.server_proxies[0].metric("RequestCount", DiscoveryName="echo") == 80
