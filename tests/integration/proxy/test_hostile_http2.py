"""Hostile HTTP/2 clients against a real ``sc-proxy`` process (issue 11): rapid reset, a SETTINGS flood, a
PING flood, and a PING flood from a client that never reads. For each, for a few seconds: the proxy
answers GOAWAY ENHANCE_YOUR_CALM (or closes the non-reader), its RSS stays within +32 MiB, and a victim on
another connection keeps getting answers with p99 under 200 ms. Requests reset before they were forwarded
never reach the upstream.

The attack and the victim use separate endpoints (separate upstream servers) so the upstream's request
count tells what the attack got forwarded. Figures go to stdout (``-s``) for sidecar/README.md.
"""

from __future__ import annotations

import contextlib
import math
import signal
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import RequestReceived, StreamReset

from support.grpc_env import VIP, RawH2Client, ScriptedH2Server, client_config, endpoint
from support.h2attack import (
    Attack,
    NonReadingPingFlood,
    ping_payload,
    rapid_reset_payload,
    settings_payload,
)
from support.proxy import ProxyProcess, wait_for

KIB_PER_MIB = 1024
ENHANCE_YOUR_CALM = 0xB
ATTACK_SECONDS = 3.0
RSS_BOUND_KIB = 32 * KIB_PER_MIB
P99_BOUND_MS = 200.0


@dataclass
class Env:
    proxy: ProxyProcess
    victim_url: str
    attack_port: int
    victim_server: ScriptedH2Server
    attack_server: ScriptedH2Server


def _env(tmp: Path, name: str, host_base: int, **limits: Any) -> Iterator[Env]:
    victim_srv = ScriptedH2Server("victim", f"127.0.0.{host_base}")
    attack_srv = ScriptedH2Server("attacked", f"127.0.0.{host_base + 1}")
    cfg, ports = client_config(
        [
            endpoint("victim", [(victim_srv.host, victim_srv.port)], "http2"),
            endpoint("attacked", [(attack_srv.host, attack_srv.port)], "http2"),
        ],
        limits={"http2": limits} if limits else {},
    )
    proxy = ProxyProcess(cfg, tmp, name=name)
    try:
        yield Env(proxy, f"http://{VIP}:{ports['victim']}", ports["attacked"], victim_srv, attack_srv)
    finally:
        proxy.stop(signal.SIGKILL)
        victim_srv.close()
        attack_srv.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A proxy with the default limits."""
    yield from _env(tmp_path_factory.mktemp("hostile-h2"), "proxy", 71)


@pytest.fixture(scope="module")
def env_fast_control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Control-frame limits out of the way (so only the unread-answers defences act), a 1 s unread
    timeout."""
    yield from _env(
        tmp_path_factory.mktemp("hostile-h2-noread"),
        "proxy-noread",
        73,
        controlFramesPerSecond=1_000_000,
        controlFrameBurst=1_000_000,
        maxPendingControlAnswers=1_000_000,
        unreadTimeoutSeconds=1,
    )


@dataclass
class VictimFigures:
    requests: int
    p50_ms: float
    p99_ms: float
    max_rss_delta_kib: int


def _victim(env: Env, busy: Callable[[], bool], max_requests: int = 20_000) -> VictimFigures:
    """Sequential GETs on one HTTP/2 connection while ``busy()``; every one must succeed. Samples the
    proxy's RSS as it goes."""
    base = env.proxy.rss_kib()
    peak = base
    latencies: list[float] = []
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        client.get(f"{env.victim_url}/warm")
        while busy() and len(latencies) < max_requests:
            t0 = time.perf_counter()
            r = client.get(f"{env.victim_url}/v{len(latencies)}")
            latencies.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
            if len(latencies) % 20 == 0:
                peak = max(peak, env.proxy.rss_kib())
    peak = max(peak, env.proxy.rss_kib())
    assert len(latencies) >= 20, "the victim hardly ran"
    latencies.sort()
    return VictimFigures(
        requests=len(latencies),
        p50_ms=statistics.median(latencies),
        p99_ms=latencies[math.ceil(len(latencies) * 0.99) - 1],  # nearest rank
        max_rss_delta_kib=peak - base,
    )


def _protection(proxy: ProxyProcess, name: str) -> float:
    return proxy.metric("ProtectionTriggeredCount", Protection=name)


#: What answers a SETTINGS or PING flood: the control-frame bucket runs out past 1000 frames, or (when two
#: reads come before one write) 1000 acknowledgements wait unwritten first.
CONTROL_DEFENCES = ("http2_control_flood", "http2_unread_answers")


def _run_attack(env: Env, payload: bytes, label: str) -> tuple[VictimFigures, list[int], list[float]]:
    names = ("http2_rapid_reset", *CONTROL_DEFENCES)
    before = sum(_protection(env.proxy, n) for n in names)
    attack = Attack(VIP, env.attack_port, payload, ATTACK_SECONDS)
    attack.start()
    figures = _victim(env, attack.running)
    report = attack.join()
    assert report.connections >= 1
    goaway_ms = sorted(t * 1000 for t in report.goaway_after)
    print(
        f"\n[{label}] connections={report.connections} goaways={len(report.goaways)} "
        f"goaway_ms_median={statistics.median(goaway_ms) if goaway_ms else None:.1f} "
        f"goaway_ms_max={max(goaway_ms) if goaway_ms else None:.1f} victim_requests={figures.requests} "
        f"victim_p50_ms={figures.p50_ms:.1f} victim_p99_ms={figures.p99_ms:.1f} "
        f"rss_delta_mib={figures.max_rss_delta_kib / 1024:.1f} errors={report.errors[:3]}"
    )
    # Each GOAWAY was a defence firing, and counted.
    assert sum(_protection(env.proxy, n) for n in names) - before == len(report.goaways)
    return figures, report.goaways, goaway_ms


def _check_figures(figures: VictimFigures) -> None:
    assert figures.p99_ms < P99_BOUND_MS, figures
    assert figures.max_rss_delta_kib < RSS_BOUND_KIB, figures


def test_baseline_victim(env: Env) -> None:
    """The victim alone, for the figures' comparison."""
    until = time.monotonic() + 1.0
    figures = _victim(env, lambda: time.monotonic() < until)
    print(
        f"\n[baseline] victim_requests={figures.requests} victim_p50_ms={figures.p50_ms:.1f} "
        f"victim_p99_ms={figures.p99_ms:.1f}"
    )
    _check_figures(figures)


def test_rapid_reset(env: Env) -> None:
    before = _protection(env.proxy, "http2_rapid_reset")
    figures, goaways, _ = _run_attack(env, rapid_reset_payload(1500), "rapid-reset")
    _check_figures(figures)
    assert goaways, "no GOAWAY"
    assert set(goaways) == {ENHANCE_YOUR_CALM}
    assert _protection(env.proxy, "http2_rapid_reset") - before == len(goaways)
    # Every attack request was reset in the read that opened it: none was forwarded.
    assert env.attack_server.requests == 0


def test_settings_flood(env: Env) -> None:
    figures, goaways, _ = _run_attack(env, settings_payload(1500), "settings-flood")
    _check_figures(figures)
    assert goaways
    assert set(goaways) == {ENHANCE_YOUR_CALM}


def test_ping_flood_without_reading(env: Env) -> None:
    """PINGs written whole before reading anything: the 1001st is one too many."""
    figures, goaways, _ = _run_attack(env, ping_payload(3000), "ping-flood")
    _check_figures(figures)
    assert goaways
    assert set(goaways) == {ENHANCE_YOUR_CALM}


def test_non_reading_client_is_paused_then_closed(env_fast_control: Env) -> None:
    """With the rate limits out of the way, a client that floods PINGs and never reads: the proxy stops
    reading from it once its answers back up, and closes it when they do not move for 1 s."""
    env = env_fast_control
    flood = NonReadingPingFlood(VIP, env.attack_port, seconds=10)
    flood.start()
    figures = _victim(env, flood.running)
    flood.join()
    print(
        f"\n[non-reading ping flood] closed_after_s={flood.closed_after} sent_mib={flood.sent / 1048576:.1f} "
        f"victim_requests={figures.requests} victim_p99_ms={figures.p99_ms:.1f} "
        f"rss_delta_mib={figures.max_rss_delta_kib / 1024:.1f}"
    )
    _check_figures(figures)
    assert flood.closed_after is not None, "the proxy kept the non-reading client"
    assert flood.closed_after < 8
    wait_for("the unread-answers defence counted", lambda: _protection(env.proxy, "http2_unread_answers"))


def test_a_request_with_101_header_fields_is_refused(env: Env) -> None:
    before = _protection(env.proxy, "header_count")
    forwarded = env.attack_server.requests
    head = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/many"), (b":authority", b"a")]
    client = RawH2Client(VIP, env.attack_port)
    try:
        sid = client.request([*head, *((f"x-h{i}".encode(), b"v") for i in range(101))])
        resets: list[Any] = []
        deadline = time.monotonic() + 5
        while not resets and time.monotonic() < deadline:
            resets = [e for e in client.events(timeout=1) if isinstance(e, StreamReset)]
        assert [(r.stream_id, r.error_code) for r in resets] == [(sid, ErrorCodes.INTERNAL_ERROR)]
    finally:
        client.close()
    assert env.attack_server.requests == forwarded
    assert _protection(env.proxy, "header_count") - before == 1
    # 100 fields pass: httpx adds accept, accept-encoding and user-agent to these 97.
    with httpx.Client(http1=False, http2=True, timeout=5) as victim:
        r = victim.get(f"{env.victim_url}/hundred", headers={f"x-h{i}": "v" for i in range(97)})
    assert r.status_code == 200


def test_proxy_still_serves_after_the_attacks(env: Env) -> None:
    with httpx.Client(http1=False, http2=True, timeout=5) as client:
        r = client.get(f"{env.victim_url}/after")
    assert r.status_code == 200
    assert env.proxy.alive()


def test_a_request_reset_while_its_upstream_connects_is_never_sent(
    start_proxy: Callable[..., ProxyProcess],
) -> None:
    """The request waits for the upstream's SETTINGS; the client resets it meanwhile (a later read): once
    the upstream connection is up, nothing of that request is sent on it."""
    listener = socket.create_server(("127.0.0.75", 0))
    host, port = listener.getsockname()[:2]
    cfg, ports = client_config([endpoint("slow", [(host, port)], "http2")])
    start_proxy(cfg, name="proxy-dial")
    client = RawH2Client(VIP, ports["slow"])
    sid = client.request(
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/r"), (b":authority", b"s")]
    )
    listener.settimeout(5)
    upstream, _ = listener.accept()  # the proxy dialled; the upstream says nothing yet
    with upstream:
        client.h2.reset_stream(sid, ErrorCodes.CANCEL)
        client.sock.sendall(client.h2.data_to_send())
        time.sleep(0.3)  # let the proxy read the reset before the upstream's SETTINGS arrive
        server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        server.initiate_connection()
        upstream.sendall(server.data_to_send())
        upstream.settimeout(0.5)
        requests = 0
        with contextlib.suppress(TimeoutError):
            while chunk := upstream.recv(65536):
                requests += sum(isinstance(e, RequestReceived) for e in server.receive_data(chunk))
                upstream.sendall(server.data_to_send())
        assert requests == 0
    client.close()
    listener.close()
