"""Hostile HTTP/1.1 input against a real ``sc-proxy`` process: each case gets the right status or a clean
close, the process survives, and no connection leaks (ActiveConnectionCount returns to 0).

One proxy serves the whole module (short header and idle timeouts so slow cases end quickly); a final
property-based test drives random and mutated bytes into it and checks it still answers a valid request.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.http1env import (
    VIP,
    active_connections,
    http_endpoint,
    proxy_config,
    raw_exchange,
    read_until_close,
    start_upstreams,
    status_of,
    wait_for,
)
from support.proxy import ProxyProcess
from support.upstreams import UpstreamProcess

LABEL = 'TargetDiscoveryName="backend"'
VALID = b"GET /ok HTTP/1.1\r\nHost: backend\r\n\r\n"


class Env:
    def __init__(self, proxy: ProxyProcess, port: int, upstream: UpstreamProcess) -> None:
        self.proxy = proxy
        self.port = port
        self.upstream = upstream


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("hostile")
    (up,) = start_upstreams(tmp, "a")
    cfg, ports = proxy_config(
        [http_endpoint("backend", [(up.host, up.port)], timeouts={"idleTimeoutSeconds": 2})],
        limits={"headerTimeoutSeconds": 0.5},
        access_log={"format": "JSON"},
    )
    proxy = ProxyProcess(cfg, tmp)
    try:
        yield Env(proxy, ports["backend"], up)
    finally:
        proxy.stop(signal.SIGKILL)
        up.stop()


def assert_healthy(env: Env) -> None:
    assert env.proxy.alive()
    response, _ = raw_exchange(env.port, VALID.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert status_of(response) == 200
    wait_for(lambda: active_connections(env.proxy) == 0, what="no leaked connection")


CASES = [
    ("garbage request line", b"GARBAGE\r\n\r\n", 400),
    ("TLS hello on a plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : backend\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: backend\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: backend\n\n", 400),
    ("NUL in a value", b"GET / HTTP/1.1\r\nHost: back\x00end\r\n\r\n", 400),
    ("no Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    (
        "CL.TE smuggling",
        b"POST / HTTP/1.1\r\nHost: backend\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: backend\r\n\r\n",
        400,
    ),
    (
        "TE.CL smuggling",
        b"POST / HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        b"8\r\nSMUGGLED\r\n0\r\n\r\n",
        400,
    ),
    (
        "TE with an obfuscated value",
        b"POST / HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    (
        "differing Content-Length",
        b"POST / HTTP/1.1\r\nHost: backend\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    (
        "bad chunk size",
        b"POST /sink HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nxyz\r\n",
        400,
    ),
    ("headers over 64 KiB", b"GET / HTTP/1.1\r\nHost: backend\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n", 431),
    ("HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n", 426),
]


@pytest.mark.parametrize(("name", "data", "status"), CASES, ids=[c[0] for c in CASES])
def test_bad_requests_get_their_status_and_a_close(env: Env, name: str, data: bytes, status: int) -> None:
    before = env.proxy.metric("TargetRejectedCount", LABEL)
    response, closed = raw_exchange(env.port, data)
    assert status_of(response) == status, (name, response[:200])
    assert b"connection: close" in response.split(b"\r\n\r\n")[0]
    assert closed, name
    assert response.count(b"HTTP/1.1 ") == 1, "nothing after the refusal may be answered (no smuggling)"
    if status in (400, 431, 501):
        assert env.proxy.metric("TargetRejectedCount", LABEL) == before + 1
    assert_healthy(env)


def test_a_client_trickling_headers_is_cut_with_408(env: Env) -> None:
    with socket.create_connection((VIP, env.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: backend\r\n")
        t0 = time.monotonic()
        got = b""
        closed = False
        for _ in range(40):  # one byte every 50 ms, bounded at 2 s
            try:
                sock.sendall(b"X")
            except OSError:
                break
            time.sleep(0.05)
            sock.setblocking(False)
            try:
                piece = sock.recv(65536)
            except BlockingIOError:
                piece = None
            except ConnectionResetError:
                closed = True
                break
            finally:
                sock.setblocking(True)
            if piece == b"":
                closed = True
                break
            if piece:
                got += piece
        rest, closed_after = read_until_close(sock, 2)
        got += rest
    assert status_of(got) == 408
    assert closed or closed_after
    assert 0.4 < time.monotonic() - t0 < 2.5
    assert_healthy(env)


def _wait_closed(sock: socket.socket, trickle: bytes, period: float, limit: float) -> tuple[float, bytes]:
    """Send ``trickle`` every ``period`` s until the proxy closes (at most ``limit`` s): (seconds, read)."""
    t0 = time.monotonic()
    got = b""
    sock.setblocking(False)
    while time.monotonic() - t0 < limit:
        if trickle:
            try:
                sock.send(trickle)
            except OSError:
                return time.monotonic() - t0, got
        ready, _, _ = select.select([sock], [], [], period)
        if ready:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                return time.monotonic() - t0, got
            if not piece:
                return time.monotonic() - t0, got
            got += piece
    raise AssertionError(f"still open after {limit} s (read {got[:100]!r})")


def _access_records(env: Env) -> list[dict[str, object]]:
    return [json.loads(line) for line in env.proxy.output().splitlines() if line.startswith("{")]


def test_a_silent_connection_is_closed_at_the_header_timeout(env: Env) -> None:
    """Not at the idle timeout (2 s here, 300 s by default): a connection that says nothing costs a
    descriptor for headerTimeoutSeconds (0.5 s here) at most."""
    before = env.proxy.metric("ProtectionTriggeredCount", 'Protection="http1_header_timeout"')
    with socket.create_connection((VIP, env.port), timeout=5) as sock:
        took, got = _wait_closed(sock, b"", 0.05, 4)
    assert got == b""  # nothing was asked: nothing is answered
    assert 0.4 < took < 1.5
    wait_for(
        lambda: (
            env.proxy.metric("ProtectionTriggeredCount", 'Protection="http1_header_timeout"') == before + 1
        ),
        what="the defence counted",
    )
    assert _access_records(env)[-1]["protection"] == "http1_header_timeout"
    assert_healthy(env)


def test_a_trickle_of_empty_lines_cannot_hold_a_new_connection_open(env: Env) -> None:
    """One CRLF every 100 ms: empty lines before a request line reset nothing, so the header timeout
    (0.5 s, counted from the connection's opening) closes the connection."""
    with socket.create_connection((VIP, env.port), timeout=5) as sock:
        took, got = _wait_closed(sock, b"\r\n", 0.1, 4)
    assert got == b""
    assert 0.4 < took < 1.5
    assert_healthy(env)


def test_a_trickle_of_empty_lines_after_a_response_ends_at_the_idle_timeout(env: Env) -> None:
    """Between requests on a keep-alive connection the idle timeout (2 s here) governs, as in ECS; empty
    lines do not count as activity, so a trickle of them is cut when it runs out."""
    with socket.create_connection((VIP, env.port), timeout=5) as sock:
        sock.sendall(VALID)
        first = sock.recv(65536)
        assert status_of(first) == 200
        took, got = _wait_closed(sock, b"\r\n", 0.3, 6)
    assert got == b""
    assert 1.5 < took < 3.5
    assert_healthy(env)


def test_a_keep_alive_connection_may_idle_longer_than_the_header_timeout(env: Env) -> None:
    """After a response the header timeout (0.5 s) does not run: the next request may come 1 s later."""
    with socket.create_connection((VIP, env.port), timeout=5) as sock:
        sock.sendall(VALID)
        assert status_of(sock.recv(65536)) == 200
        time.sleep(1.0)  # the point of the test: longer than headerTimeoutSeconds, shorter than idle
        sock.sendall(VALID.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        response, closed = read_until_close(sock, 5)
    assert status_of(response) == 200
    assert closed
    assert_healthy(env)


def test_many_empty_lines_before_a_request_are_refused(env: Env) -> None:
    response, closed = raw_exchange(env.port, b"\r\n" * 2 + VALID.replace(b"/ok", b"/ok?two-empty-lines"))
    assert status_of(response) == 200  # RFC 9112 §2.2: at least one empty line is ignored
    response, closed = raw_exchange(env.port, b"\r\n" * 9 + VALID)
    assert status_of(response) == 400
    assert closed
    assert_healthy(env)


def _with_fields(count: int) -> bytes:
    extra = b"".join(b"X-Field-%d: %d\r\n" % (i, i) for i in range(count - 2))
    return b"GET /count HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n" + extra + b"\r\n"


def test_100_header_fields_pass_and_101_get_431(env: Env) -> None:
    response, _ = raw_exchange(env.port, _with_fields(100))
    assert status_of(response) == 200
    headers = json.loads(response.split(b"\r\n\r\n", 1)[1])["headers"]
    assert headers["x-field-97"] == "97"
    before = env.proxy.metric("ProtectionTriggeredCount", 'Protection="header_count"')
    response, closed = raw_exchange(env.port, _with_fields(101))
    assert status_of(response) == 431
    assert closed
    assert env.proxy.metric("ProtectionTriggeredCount", 'Protection="header_count"') == before + 1
    wait_for(lambda: _access_records(env)[-1].get("status") == 431, what="the refusal's access-log line")
    record = _access_records(env)[-1]
    assert (record["response_flags"], record["protection"]) == ("DPE", "header_count")
    assert_healthy(env)


def test_an_upstream_response_with_101_header_fields_is_a_502(tmp_path: Path) -> None:
    """The same limit on the response side: the client gets a 502 (access log: UPE, header_count)."""
    fields = b"".join(b"X-Field-%d: v\r\n" % i for i in range(101))
    listener = socket.create_server(("127.0.0.2", 0))
    stop = threading.Event()

    def serve() -> None:  # a task that answers every request with 101 header fields, then closes
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + fields + b"\r\nok")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    cfg, ports = proxy_config(
        [http_endpoint("backend", [listener.getsockname()[:2]], retries={"attempts": 0})],
        access_log={"format": "JSON"},
    )
    proxy = ProxyProcess(cfg, tmp_path)
    try:
        response, _ = raw_exchange(ports["backend"], VALID)
        assert status_of(response) == 502
        assert proxy.metric("ProtectionTriggeredCount", 'Protection="header_count"') == 1
        records = [json.loads(line) for line in proxy.output().splitlines() if line.startswith("{")]
        assert (records[-1]["status"], records[-1]["response_flags"], records[-1]["protection"]) == (
            502,
            "UPE",
            "header_count",
        )
    finally:
        proxy.stop(signal.SIGKILL)
        stop.set()
        server.join(5)
        listener.close()


def test_upstream_reset_gives_502_and_garbage_gives_502(env: Env) -> None:
    for path in (b"/reset", b"/garbage"):
        response, _ = raw_exchange(env.port, b"GET %s HTTP/1.1\r\nHost: backend\r\n\r\n" % path)
        assert status_of(response) == 502, path
    assert_healthy(env)


def test_clients_vanishing_mid_request_leak_nothing(env: Env) -> None:
    partials = [
        b"GET / HTTP/1.1\r\nHos",
        b"POST /sink HTTP/1.1\r\nHost: backend\r\nContent-Length: 1000\r\n\r\nonly-part",
        b"POST /sink HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
        b"GET /delay/300 HTTP/1.1\r\nHost: backend\r\n\r\n",
    ]
    for data in partials:
        with socket.create_connection((VIP, env.port), timeout=5) as sock:
            sock.sendall(data)
            time.sleep(0.05)
    for data in partials:  # and the same with an RST instead of a FIN
        with socket.create_connection((VIP, env.port), timeout=5) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.sendall(data)
            time.sleep(0.05)
    assert_healthy(env)


def test_many_pipelined_requests_do_not_grow_without_bound(env: Env) -> None:
    burst = VALID * 2000  # far more than the pipeline depth: reading pauses, all are answered in order
    with socket.create_connection((VIP, env.port), timeout=30) as sock:
        # Send from a thread while this one reads: a client that only writes would fill both socket
        # buffers once the proxy (rightly) stops reading, and the test would deadlock, not the proxy.
        sender = threading.Thread(
            target=sock.sendall,
            args=(burst + b"GET /ok HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n",),
            daemon=True,
        )
        sender.start()
        data, closed = read_until_close(sock, 30)
        sender.join(5)
    assert closed
    assert data.count(b"HTTP/1.1 200 ") == 2001
    assert_healthy(env)


def test_a_head_left_half_read_while_the_proxy_stops_reading_is_not_timed_out(env: Env) -> None:
    """headerTimeoutSeconds (0.5 s here) measures a slow client, not the proxy's own back-pressure: 20
    pipelined requests of 200 ms each stop the proxy reading (at most 16 wait) with the next request's
    head cut in the middle; its end, sent at 0.6 s, is read only when the backlog drains, ~1 s later."""
    slow = b"GET /delay/200 HTTP/1.1\r\nHost: backend\r\n\r\n"
    last = b"GET /ok HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n"
    with socket.create_connection((VIP, env.port), timeout=30) as sock:
        sock.sendall(slow * 20 + last[:20])
        time.sleep(0.6)
        sock.sendall(last[20:])
        data, closed = read_until_close(sock, 30)
    assert closed
    assert b"HTTP/1.1 408" not in data
    assert data.count(b"HTTP/1.1 200 ") == 21
    assert_healthy(env)


_MUTATION_BASES = [
    VALID,
    b"POST /sink HTTP/1.1\r\nHost: backend\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /sink HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: backend\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
]


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_MUTATION_BASES)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        piece = draw(
            st.sampled_from([b"\r\n", b"\n", b"\x00", b" ", b":", b"0", b"-1", b"\t", b"\xff", b"chunked"])
        )
        if op == "insert":
            data[pos:pos] = piece
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "replace" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        else:
            data[pos:pos] = data[max(0, pos - 20) : pos]
    return bytes(data)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(payload=st.one_of(st.binary(min_size=1, max_size=512), mutated_requests()))
def test_fuzzed_bytes_never_crash_the_proxy(env: Env, payload: bytes) -> None:
    with socket.create_connection((VIP, env.port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        response, _ = read_until_close(sock, 4)
    if response:
        # Whatever came back is HTTP/1.1 with a status the proxy is allowed to give.
        assert response.startswith(b"HTTP/1.1 "), response[:80]
        assert status_of(response) in {101, 200, 400, 405, 408, 426, 431, 501, 502, 503, 504, 505}
    assert env.proxy.alive()


def test_after_fuzzing_the_proxy_serves_and_holds_no_connection(env: Env) -> None:
    assert_healthy(env)


def test_no_handler_raised_during_all_of_the_above(env: Env) -> None:
    # An exception inside a protocol callback is only logged by the event loop; make it a failure.
    log = env.proxy.log.read_text()
    assert "Traceback" not in log, log[-3000:]
