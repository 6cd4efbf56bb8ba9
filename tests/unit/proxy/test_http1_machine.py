"""The downstream HTTP/1.1 state machine in memory: no sockets, no event loop, a fake clock.

A recording driver stands for the client's socket and the timers, real upstream connection objects
(:class:`~sc_proxy.http1.pool.UpstreamConn`) sit on fake transports, and the client's view (what was
written to it) is read back with h11, an independent HTTP/1.1 implementation. Assertions are about what a
user sees: the bytes and status codes the client gets, which task got the request, whether the proxy reads.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import h11
import pytest

from sc_proxy.accesslog import AccessLogger
from sc_proxy.cluster import Cluster, Host
from sc_proxy.config import Limits
from sc_proxy.http1.machine import (
    MAX_PIPELINE,
    Exchange,
    Http1Machine,
    IllegalTransition,
    Phase,
    Timer,
    Upstream,
)
from sc_proxy.http1.pool import Pool, UpstreamConn
from sc_proxy.lifecycle import Lifecycle
from sc_proxy.metrics import EgressStats, Registry
from sc_proxy.route import Route

A = Host("10.0.0.1", 80)
B = Host("10.0.0.2", 80)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Transport:
    """An upstream socket: records what the proxy sends the task."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class FakePool:
    """Keeps released connections per host (the real pool needs an event loop for its sweeper)."""

    def __init__(self) -> None:
        self.idle: dict[Host, list[UpstreamConn]] = {}
        self.real = Pool(Cluster("x"), None, 1.0)  # what UpstreamConn expects as its pool

    def take(self, host: Host) -> Upstream | None:
        idle = self.idle.get(host)
        return idle.pop() if idle else None

    def put(self, conn: Upstream) -> None:
        assert isinstance(conn, UpstreamConn)
        conn.owner = None
        if not conn.closed:
            self.idle.setdefault(conn.host, []).append(conn)


@dataclass
class Driver:
    """The client's side of the socket and the timers, as the machine asks for them."""

    out: bytearray = field(default_factory=bytearray)
    reading: bool = True
    closed: bool = False
    reset_: bool = False
    timers: dict[Timer, float] = field(default_factory=dict)
    connects: list[tuple[Exchange, Host]] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def reset(self) -> None:
        self.reset_ = True

    def arm_timer(self, timer: Timer, at: float) -> None:
        self.timers[timer] = at

    def cancel_timer(self, timer: Timer) -> None:
        del self.timers[timer]

    def connect(self, ex: Exchange, host: Host) -> None:
        self.connects.append((ex, host))


class Harness:
    def __init__(self, hosts: tuple[Host, ...] = (A, B), **route: object) -> None:
        self.clock = Clock()
        self.log = io.StringIO()
        settings: dict[str, object] = {
            "per_request_timeout": 15.0,
            "idle_timeout": 300.0,
            "retries": 2,
            "limits": Limits(header_timeout_seconds=10.0),
        }
        settings.update(route)
        self.route = Route(
            direction="egress",
            name="svc",
            app_protocol="http",
            cluster=Cluster("svc", hosts=hosts, clock=self.clock),
            stats=EgressStats("svc", Registry(process_metrics=False)),
            access_log=AccessLogger("JSON", stream=self.log),
            lifecycle=Lifecycle(),
            **settings,  # type: ignore[arg-type]
        )
        self.pool = FakePool()
        self.driver = Driver()
        # One clock for timers and response times, so the access log's durations follow the fake time.
        self.m = Http1Machine(self.route, self.pool, self.driver, self.clock, precise=self.clock)
        self.m.connection_made()
        self.upstreams: dict[Host, list[UpstreamConn]] = {}

    def feed(self, data: bytes) -> None:
        self.m.data_received(data)

    def connect(self, *, fail: str | None = None, closed: bool = False) -> UpstreamConn | None:
        """Finish the oldest connection attempt: up, failed (``fail``), or up but already closed."""
        ex, host = self.driver.connects.pop(0)
        if fail is not None:
            self.m.upstream_connect_failed(ex, host, None)
            return None
        conn = UpstreamConn(self.pool.real, host)
        conn.connection_made(Transport())  # type: ignore[arg-type]
        conn.closed = closed
        self.upstreams.setdefault(host, []).append(conn)
        self.m.upstream_connected(ex, host, conn)
        return conn

    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    def advance(self, seconds: float) -> None:
        """Move the clock, firing the timers that fall due (in time order), as the event loop would."""
        self.clock.t += seconds
        while True:
            due = [(at, t) for t, at in self.driver.timers.items() if at <= self.clock.t]
            if not due:
                return
            _, timer = min(due)
            del self.driver.timers[timer]
            self.m.timer_fired(timer)

    def responses(self, *requests: bytes) -> list[tuple[int, bytes]]:
        """The client's view: status and body of each response, parsed by h11 (sending ``requests`` first
        so it knows e.g. which ones were HEAD)."""
        client = h11.Connection(h11.CLIENT)
        out: list[tuple[int, bytes]] = []
        data = bytes(self.driver.out)
        client.receive_data(data)
        for _ in requests or [b"GET"]:
            if client.our_state is h11.DONE and client.their_state is h11.DONE:
                client.start_next_cycle()
            client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
            status, body = 0, b""
            while True:
                ev = client.next_event()
                if ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed):
                    break
                if isinstance(ev, h11.InformationalResponse):
                    out.append((ev.status_code, b""))
                elif isinstance(ev, h11.Response):
                    status = ev.status_code
                elif isinstance(ev, h11.Data):
                    body += ev.data
                elif isinstance(ev, h11.EndOfMessage):
                    out.append((status, body))
                    break
            if ev is h11.NEED_DATA:
                break
        return out


def wire(conn: UpstreamConn | None) -> Transport:
    """The fake socket under an upstream connection."""
    assert conn is not None
    assert isinstance(conn.transport, Transport)
    return conn.transport


def sent(conn: UpstreamConn | None) -> bytes:
    return bytes(wire(conn).sent)


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: svc\r\n{extra}\r\n".encode()


# --- the happy path, keep-alive, pipelining


def test_a_request_goes_to_a_task_and_its_response_back_to_the_client() -> None:
    h = Harness(hosts=(A,))
    h.feed(get("/a"))
    up = h.connect()
    assert up is not None
    assert sent(up).startswith(b"GET /a HTTP/1.1\r\n")
    up.data_received(OK)
    assert h.responses() == [(200, b"ok")]
    assert not h.driver.closed
    assert h.pool.idle[up.host] == [up]  # a complete exchange: the connection is kept for the next one
    h.feed(get("/b"))
    assert not h.driver.connects  # the pooled connection took it
    assert sent(up).count(b"GET /b ") == 1


def test_pipelined_requests_are_answered_in_order_one_upstream_request_at_a_time() -> None:
    h = Harness(hosts=(A,))
    h.feed(get("/1") + get("/2") + get("/3"))
    up = h.connect()
    assert up is not None
    assert b"/2" not in sent(up)  # one at a time: the second waits for the first response
    for n in (1, 2, 3):
        assert sent(up).count(b"GET /%d " % n) == 1
        up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % n)
    assert h.responses(b"1", b"2", b"3") == [(200, b"1"), (200, b"2"), (200, b"3")]


def test_a_full_pipeline_pauses_reading_the_client_until_it_drains() -> None:
    h = Harness(hosts=(A,))
    h.feed(b"".join(get(f"/{i}") for i in range(MAX_PIPELINE)))
    assert h.driver.reading
    h.feed(get("/extra"))  # the one in flight and MAX_PIPELINE waiting: stop reading
    assert not h.driver.reading
    up = h.connect()
    assert up is not None
    up.data_received(OK)  # one answered: the queue is back at its limit
    assert h.driver.reading


def test_unsent_pipelined_bodies_beyond_the_backlog_limit_pause_reading() -> None:
    h = Harness(hosts=(A,))
    h.feed(get("/first"))
    body = b"x" * (200 * 1024)
    post = b"POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: %d\r\n\r\n" % (2 * len(body))
    h.feed(post + body)
    assert h.driver.reading
    h.feed(body)  # 400 KiB held for a request not yet sent upstream: over the 256 KiB backlog
    assert not h.driver.reading
    up = h.connect()
    assert up is not None
    up.data_received(OK)  # the POST goes upstream, taking its held body with it
    assert h.driver.reading
    assert sent(up).endswith(body + body)


# --- 100-continue and upgrades


def test_100_continue_from_the_task_reaches_the_client_before_the_body_is_sent() -> None:
    h = Harness(hosts=(A,))
    h.feed(b"POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    up = h.connect()
    assert up is not None
    up.data_received(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert bytes(h.driver.out) == b"HTTP/1.1 100 Continue\r\n\r\n"
    h.feed(b"hello")
    assert sent(up).endswith(b"\r\n\r\nhello")
    up.data_received(OK)
    assert h.responses() == [(100, b""), (200, b"ok")]


def test_an_upgrade_turns_the_connection_into_a_byte_relay() -> None:
    h = Harness(hosts=(A,))
    h.feed(get("/ws", "Connection: upgrade\r\nUpgrade: websocket\r\n") + b"early")
    assert not h.driver.reading  # nothing is parsed after an upgrade request until the task answers
    up = h.connect()
    assert up is not None
    up.data_received(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nhi"
    )
    assert h.driver.out.startswith(b"HTTP/1.1 101 ")
    assert h.driver.out.endswith(b"\r\n\r\nhi")
    assert sent(up).endswith(b"early")  # bytes the client sent after the request head follow the 101
    assert h.driver.reading
    h.feed(b"GET / HTTP/1.1\r\n\r\n")  # not parsed any more: relayed as is
    assert sent(up).endswith(b"early" + b"GET / HTTP/1.1\r\n\r\n")
    up.data_received(b"\x81\x00")
    assert h.driver.out.endswith(b"hi\x81\x00")
    h.advance(60.0)  # no request timeout on an upgraded connection
    assert not h.driver.closed
    assert not h.driver.reset_


def test_an_upgrade_refused_by_the_task_closes_after_the_response() -> None:
    h = Harness(hosts=(A,))
    h.feed(get("/ws", "Connection: upgrade\r\nUpgrade: websocket\r\n"))
    up = h.connect()
    assert up is not None
    up.data_received(OK)
    assert h.responses() == [(200, b"ok")]
    assert h.driver.closed


# --- retries


def test_a_connect_failure_is_retried_on_the_other_task() -> None:
    h = Harness()
    h.feed(b"POST /p HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\n\r\nbody")
    first_host = h.driver.connects[0][1]
    h.connect(fail="refused")
    assert h.driver.connects[0][1] != first_host
    up = h.connect()
    assert up is not None
    assert sent(up).endswith(b"\r\n\r\nbody")  # the held body is replayed
    up.data_received(OK)
    assert h.responses() == [(200, b"ok")]


def test_a_task_that_closes_before_any_response_byte_is_retried_elsewhere() -> None:
    h = Harness()
    h.feed(get("/"))
    up = h.connect()
    assert up is not None
    up.connection_lost(None)  # reset after the request, before a response byte
    up2 = h.connect()
    assert up2 is not None
    assert up2.host != up.host
    assert sent(up2).startswith(b"GET / ")
    up2.data_received(OK)
    assert h.responses() == [(200, b"ok")]


def test_a_503_is_retried_and_the_client_sees_the_retry_s_answer() -> None:
    h = Harness()
    h.feed(get("/"))
    up = h.connect()
    assert up is not None
    up.data_received(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    assert h.driver.out == b""
    up2 = h.connect()
    assert up2 is not None
    up2.data_received(OK)
    assert h.responses() == [(200, b"ok")]


def test_no_retry_once_a_response_byte_reached_the_client() -> None:
    h = Harness()
    h.feed(get("/"))
    up = h.connect()
    assert up is not None
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
    up.connection_lost(None)
    assert not h.driver.connects  # no second attempt
    assert h.driver.reset_  # the client sees the truncation
    assert h.driver.out.endswith(b"half")


def test_retries_are_bounded_by_the_route_then_503() -> None:
    h = Harness(retries=1)
    h.feed(get("/"))
    h.connect(fail="refused")
    h.connect(fail="refused")
    assert not h.driver.connects
    assert [s for s, _ in h.responses()] == [503]
    assert not h.driver.closed  # a failed request does not cost the client its connection


def test_a_connection_closed_before_the_request_was_written_counts_as_a_failed_connect() -> None:
    h = Harness()
    h.feed(get("/"))
    h.connect(closed=True)
    up = h.connect()
    assert up is not None
    up.data_received(OK)
    assert h.responses() == [(200, b"ok")]


# --- timeouts


def test_per_request_timeout_answers_504_when_no_response_byte_was_sent() -> None:
    h = Harness(per_request_timeout=2.0)
    h.feed(get("/slow"))
    up = h.connect()
    assert up is not None
    h.advance(1.9)
    assert h.driver.out == b""
    h.advance(0.2)
    assert [s for s, _ in h.responses()] == [504]
    assert up.closed  # the task's connection is dropped, not pooled


def test_per_request_timeout_after_the_response_head_cuts_the_response() -> None:
    h = Harness(per_request_timeout=2.0)
    h.feed(get("/slow"))
    up = h.connect()
    assert up is not None
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
    h.advance(2.1)
    assert h.driver.reset_


def test_the_request_timer_is_re_armed_for_the_next_request_not_per_request() -> None:
    h = Harness(hosts=(A,), per_request_timeout=2.0)
    h.feed(get("/1"))
    up = h.connect()
    assert up is not None
    up.data_received(OK)
    h.advance(1.5)
    h.feed(get("/2"))  # the timer from /1 is still armed for t+2; it must not cut /2 at t+2
    h.advance(0.6)
    assert len(h.responses(b"1", b"2")) == 1
    h.advance(1.5)  # 2.1 s after /2 started
    assert [s for s, _ in h.responses(b"1", b"2")] == [200, 504]


def test_idle_timeout_closes_a_quiet_keep_alive_connection() -> None:
    h = Harness(hosts=(A,), idle_timeout=5.0)
    h.feed(get("/"))
    up = h.connect()
    assert up is not None
    h.advance(4.0)
    up.data_received(OK)
    h.advance(4.0)  # 8 s since the connection opened, 4 s since the last activity
    assert not h.driver.closed
    h.advance(1.1)
    assert h.driver.closed


def test_idle_timeout_while_a_request_waits_answers_504() -> None:
    h = Harness(idle_timeout=5.0, per_request_timeout=None)
    h.feed(get("/"))
    h.connect()
    h.advance(5.1)
    assert [s for s, _ in h.responses()] == [504]
    assert h.driver.closed


def test_a_connection_that_sends_no_request_head_is_closed_without_an_answer() -> None:
    h = Harness()
    h.feed(b"\r\n")  # empty lines are not activity
    h.advance(10.1)
    assert h.driver.closed
    assert h.driver.out == b""


def test_a_request_head_not_complete_within_the_header_timeout_gets_408() -> None:
    h = Harness(hosts=(A,))
    h.feed(get("/"))
    up = h.connect()
    assert up is not None
    up.data_received(OK)
    h.advance(100.0)  # between requests the idle timeout applies, not the header timeout
    assert not h.driver.closed
    h.feed(b"GET /slow HTTP/1.1\r\nHost: s")
    h.advance(9.9)
    assert len(h.responses(b"1", b"2")) == 1
    h.advance(0.2)
    assert [s for s, _ in h.responses(b"1", b"2")] == [200, 408]
    assert h.driver.closed


def test_the_header_timer_does_not_run_while_the_proxy_itself_stops_reading() -> None:
    h = Harness(hosts=(A,))
    h.feed(b"".join(get(f"/{i}") for i in range(MAX_PIPELINE + 2)) + b"GET /half HTTP/1.1\r\n")
    assert not h.driver.reading
    h.advance(14.0)  # our backlog, not a slow client: no 408 (and the first request is not due yet)
    assert h.driver.out == b""
    assert Timer.HEADER not in h.driver.timers


# --- back-pressure from the upstream side and from the client side


def test_a_full_upstream_buffer_pauses_reading_the_client_and_a_slow_client_pauses_the_task() -> None:
    h = Harness(hosts=(A,))
    h.feed(b"POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\n")
    up = h.connect()
    assert up is not None
    up.pause_writing()  # the task's socket buffer is full
    assert not h.driver.reading
    up.resume_writing()
    assert h.driver.reading
    h.m.writing_paused()  # the client's socket buffer is full
    assert not wire(up).reading
    h.m.writing_resumed()
    assert wire(up).reading


# --- refusals and the state machine's own rules


def test_http_1_0_is_refused_with_426_and_closed() -> None:
    h = Harness()
    h.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert [s for s, _ in h.responses()] == [426]
    assert h.driver.closed
    assert not h.driver.connects


def test_illegal_transitions_raise_a_clear_error() -> None:
    ex = Exchange(None, None, 0.0, 0)
    ex.go(Phase.CONNECTING)
    ex.go(Phase.SENT)
    with pytest.raises(IllegalTransition, match="SENT -> UPGRADED"):
        ex.go(Phase.UPGRADED)  # no 101 relay before a response head
    ex.go(Phase.STREAMING)
    with pytest.raises(IllegalTransition, match="STREAMING -> CONNECTING"):
        ex.go(Phase.CONNECTING)  # no retry after a response byte
    ex.go(Phase.DONE)
    for target in Phase:
        with pytest.raises(IllegalTransition):
            ex.go(target)  # DONE is final


def test_a_client_that_hangs_up_mid_request_aborts_the_upstream_request() -> None:
    h = Harness(hosts=(A,))
    h.feed(get("/"))
    up = h.connect()
    assert up is not None
    h.m.connection_lost()
    assert up.closed
    assert h.driver.timers == {}  # every timer cancelled


# --- access log


def test_the_access_log_names_the_task_that_answered_a_retried_request() -> None:
    h = Harness()
    h.feed(get("/p", "User-Agent: t\r\n"))
    h.connect(fail="refused")
    h.clock.t += 0.25
    up = h.connect()
    assert up is not None
    up.data_received(OK)
    [rec] = h.records()
    assert rec["status"] == 200
    assert rec["upstream_host"] == str(up.host)
    assert rec["response_flags"] == "-"
    assert rec["duration_ms"] == 250
    assert rec["user_agent"] == "t"


def test_the_access_log_marks_a_client_that_hung_up_before_the_response() -> None:
    h = Harness(hosts=(A,))
    h.feed(get("/"))
    h.connect()
    h.m.connection_lost()
    [rec] = h.records()
    assert rec["response_flags"] == "DC"
    assert rec["status"] == 0
