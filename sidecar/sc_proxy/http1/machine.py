"""The downstream HTTP/1.1 connection as a sans-IO state machine: requests in, proxied in order, answers out.

No sockets, no event loop, no clock of its own. :class:`Http1Machine` is driven by events (bytes from the
client, events of the upstream connection, a timer that fired, a connection attempt that finished) and acts
through a narrow :class:`Driver` port (write these bytes, pause/resume reading, arm/cancel a timer, open an
upstream connection, close/abort) and the upstream connections it is handed (:class:`Upstream`). Effects are
calls on the port, not action objects, so the hot path allocates nothing per event.
:mod:`sc_proxy.http1.server` is the asyncio driver; tests drive it with fakes and a fake clock.

Requests are proxied one at a time in arrival order (pipelined requests wait in a bounded queue; reading
pauses when it is full), bodies stream in both directions with back-pressure (a slow reader on one side
pauses reading on the other), and every policy of the route applies per request: round robin, retries to
another task (connect failure, reset before any response byte, 503) when the body can be replayed, outlier
reports, perRequestTimeout (504) and idleTimeout (closes the connection; 504 when a request was waiting).

States of one exchange (:class:`Phase`, the response side; the request side is ``request_complete``: its
body is still arriving, or it is complete)::

    from        to                       on
    QUEUED      CONNECTING               started (head of the queue): host picked, no pooled connection
    QUEUED      SENT                     started: a pooled connection took the request head
    QUEUED      DONE                     a local reply (refused request, no healthy upstream)
    CONNECTING  SENT                     the connection is up: request head (and held body) written
    CONNECTING  CONNECTING               connect failed, retried on another task
    CONNECTING  DONE                     local reply: 503 (no retry left), 504 (perRequest/idle timeout)
    SENT        CONNECTING | SENT        retry: reset/closed/503 before any response byte reached the client
    SENT        STREAMING                final response head written to the client (1xx: 100 passed, stays)
    SENT        DONE                     local reply: 502/503 (no retry), 504 (timeout), refused body
    STREAMING   DONE                     response complete
    STREAMING   UPGRADED                 101 and the upstream switched: the connection is a byte relay
    any live    ABORTED                  the client connection was lost before the response completed

DONE, UPGRADED and ABORTED are final; anything else raises :class:`IllegalTransition`. "Live" is QUEUED,
CONNECTING, SENT, STREAMING. There is no retry from STREAMING (a response byte reached the client): a reset
then aborts the client connection so the truncation shows, and a timeout does the same.

The connection (:class:`ConnState`): NEW until the transport is up, OPEN while requests are parsed, RELAY
after an upgrade, CLOSED once the transport is lost. Reading the client pauses while any reason in
``read_block`` holds (queue/backlog full, upstream's buffer full, waiting for a 101, no more requests).

Timers that a client cannot hold open (``limits.headerTimeoutSeconds``, the route's idleTimeout):

- the first request head must be complete within headerTimeoutSeconds of the connection opening (a
  connection that sends nothing, or only empty lines, is closed then, without a response);
- after a response, the wait for the next request is the idleTimeout (ECS's keep-alive semantics, as
  Envoy's idle_timeout and Go's IdleTimeout); from the next request's first byte, its head must be complete
  within headerTimeoutSeconds (Envoy's request_headers_timeout), else 408;
- empty lines before a request line are not activity: they extend neither timer (and more than
  :data:`~sc_proxy.http1.parse.MAX_EMPTY_LINES` are refused).

The idle and perRequest timers are armed lazily: one deadline each, re-armed when they fire early, instead of
a timer per request or per byte.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import IntEnum
from typing import Final, Protocol

from sc_proxy import policy
from sc_proxy.accesslog import AccessRecord
from sc_proxy.cluster import Host
from sc_proxy.http1 import headers as hdr
from sc_proxy.http1.parse import (
    END,
    ParseError,
    RequestHead,
    RequestReader,
    ResponseEvent,
    ResponseHead,
    Upgraded,
)
from sc_proxy.metrics import protection_counter
from sc_proxy.route import Route

#: Parsed requests waiting behind the one in flight before reading pauses.
MAX_PIPELINE: Final = 16
#: Request body bytes held for requests not yet sent upstream before reading pauses.
MAX_BACKLOG_BYTES: Final = 256 * 1024

_NO_HOSTS: Final[frozenset[Host]] = frozenset()

# Reasons to keep the client's socket from being read (reading resumes when none is left).
R_BACKLOG: Final = 1  # pipeline queue or unsent body backlog full
R_UPSTREAM: Final = 2  # upstream's write buffer is full
R_UPGRADE: Final = 4  # upgrade requested, waiting for the 101
R_DONE: Final = 8  # no more requests will be read (error or closing)


class Phase(IntEnum):
    """Where one exchange's response is (ordered: ``>= STREAMING`` means a response byte went out)."""

    QUEUED = 0
    CONNECTING = 1
    SENT = 2
    STREAMING = 3
    DONE = 4
    UPGRADED = 5
    ABORTED = 6


class ConnState(IntEnum):
    NEW = 0
    OPEN = 1
    RELAY = 2
    CLOSED = 3


class Timer(IntEnum):
    """The connection's timers (one of each at most)."""

    IDLE = 0
    HEADER = 1
    REQUEST = 2


# Enum members cost a slow class-attribute lookup each (~90 ns on CPython 3.11): the hot path compares
# with these module constants, the same objects.
QUEUED: Final = Phase.QUEUED
CONNECTING: Final = Phase.CONNECTING
SENT: Final = Phase.SENT
STREAMING: Final = Phase.STREAMING
DONE: Final = Phase.DONE
UPGRADED: Final = Phase.UPGRADED
ABORTED: Final = Phase.ABORTED
CONN_NEW: Final = ConnState.NEW
CONN_OPEN: Final = ConnState.OPEN
CONN_RELAY: Final = ConnState.RELAY
CONN_CLOSED: Final = ConnState.CLOSED
_HEADER_ARMED: Final = 1 << Timer.HEADER
_REQUEST_ARMED: Final = 1 << Timer.REQUEST


def _bits(*phases: Phase) -> int:
    mask = 0
    for p in phases:
        mask |= 1 << p
    return mask


#: The transition table above, as a bit set of allowed targets per phase.
TRANSITIONS: Final[tuple[int, ...]] = (
    _bits(CONNECTING, SENT, DONE, ABORTED),  # QUEUED
    _bits(CONNECTING, SENT, DONE, ABORTED),  # CONNECTING
    _bits(CONNECTING, SENT, STREAMING, DONE, ABORTED),  # SENT
    _bits(DONE, UPGRADED, ABORTED),  # STREAMING
    0,  # DONE
    0,  # UPGRADED
    0,  # ABORTED
)


class IllegalTransition(Exception):
    """A bug: the machine tried a transition its table does not allow."""

    def __init__(self, current: Phase, target: Phase) -> None:
        super().__init__(f"HTTP/1.1 exchange: illegal transition {current.name} -> {target.name}")
        self.current = current
        self.target = target


class Upstream(Protocol):
    """One upstream connection as the machine uses it (:class:`sc_proxy.http1.pool.UpstreamConn`)."""

    @property
    def host(self) -> Host: ...
    @property
    def closed(self) -> bool: ...
    @property
    def received(self) -> bool: ...

    raw: bool

    def bind(
        self, owner: UpstreamOwner, head_request: bool, max_header_bytes: int, max_header_count: int = 100
    ) -> None: ...
    def write(self, data: bytes) -> None: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def feed_eof(self) -> list[ResponseEvent]: ...


class UpstreamOwner(Protocol):
    """What an upstream connection reports to the exchange using it."""

    def upstream_events(self, conn: Upstream, events: list[ResponseEvent]) -> None: ...
    def upstream_raw(self, conn: Upstream, data: bytes) -> None: ...
    def upstream_lost(self, conn: Upstream) -> None: ...
    def upstream_flow(self, conn: Upstream, paused: bool) -> None: ...


class UpstreamPool(Protocol):
    """Idle keep-alive upstream connections (:class:`sc_proxy.http1.pool.Pool`)."""

    def take(self, host: Host) -> Upstream | None: ...
    def put(self, conn: Upstream) -> None: ...


class Driver(Protocol):
    """The I/O the machine asks for (the asyncio Protocol in production, a recorder in tests)."""

    def write(self, data: bytes) -> None:
        """Send to the client."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None:
        """Close the client connection after what was written."""

    def reset(self) -> None:
        """Abort the client connection now (what was not sent is lost)."""

    def arm_timer(self, timer: Timer, at: float) -> None:
        """Call :meth:`Http1Machine.timer_fired` with ``timer`` at clock time ``at``."""

    def cancel_timer(self, timer: Timer) -> None: ...
    def connect(self, ex: Exchange, host: Host) -> None:
        """Open a connection to ``host``; report with :meth:`Http1Machine.upstream_connected` or
        :meth:`Http1Machine.upstream_connect_failed`."""


class Exchange:
    """One request and its response, across retries."""

    __slots__ = (
        "attempts_left",
        "backlog",
        "body_in",
        "bytes_out",
        "chunked_out",
        "chunks",
        "close_after",
        "conn",
        "deadline",
        "error",
        "failure",
        "has_rid",
        "head",
        "host",
        "phase",
        "protection",
        "replayable",
        "request_complete",
        "request_id",
        "sent_at",
        "start",
        "status",
        "tried",
        "up_keep_alive",
        "upgrade_rest",
    )

    def __init__(
        self, head: RequestHead | None, error: ParseError | None, start: float, retries: int
    ) -> None:
        self.phase = QUEUED
        self.head = head
        self.error = error
        # Precise-clock time of the request head: uvloop's loop.time() moves in whole milliseconds, too
        # coarse for response times (the wall clock is only read for the access log).
        self.start = start
        self.attempts_left = retries
        self.request_id = b""
        self.has_rid = False
        self.backlog = 0  # bytes of ``chunks`` counted in the connection's backlog
        self.up_keep_alive = False
        self.chunks: list[bytes] = []  # body held for replay or until an upstream is attached
        self.body_in = 0
        self.replayable = True
        self.request_complete = head is None or not head.has_body
        self.conn: Upstream | None = None
        self.host: Host | None = None
        self.tried: frozenset[Host] = _NO_HOSTS
        self.sent_at = 0.0
        self.chunked_out = False
        self.close_after = False
        self.status = 0
        self.bytes_out = 0
        self.deadline = 0.0  # clock time when perRequestTimeout fires; 0 = none
        self.upgrade_rest: bytes | None = None
        self.protection = error.protection if error is not None else None  # the defence that refused it
        self.failure: str | None = None  # the last failed TLS handshake with a task (access log)

    def go(self, target: Phase) -> None:
        """Move to ``target`` if the transition table allows it."""
        if not TRANSITIONS[self.phase] & (1 << target):
            raise IllegalTransition(self.phase, target)
        self.phase = target


class Http1Machine:
    """Server side of one client connection, without I/O."""

    __slots__ = (
        "armed",
        "backlog_bytes",
        "bytes_in",
        "cluster",
        "current",
        "draining",
        "driver",
        "first_head",
        "header_timeout",
        "last_active",
        "max_header_bytes",
        "max_header_count",
        "now",
        "obuf",
        "peer",
        "pool",
        "precise",
        "queue",
        "read_block",
        "reader",
        "relay",
        "route",
        "state",
        "stats",
        "timeout_ms",
        "wall",
        "write_paused",
    )

    def __init__(
        self,
        route: Route,
        pool: UpstreamPool,
        driver: Driver,
        now: Callable[[], float],
        precise: Callable[[], float] = time.perf_counter,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``now`` is the timers' clock (the event loop's), ``precise`` times responses, ``wall`` dates the
        access log."""
        self.route = route
        self.stats = route.stats
        self.cluster = route.cluster
        limits = route.limits
        self.max_header_bytes = limits.max_header_bytes
        self.max_header_count = limits.max_header_count
        self.header_timeout = limits.header_timeout_seconds
        self.pool = pool
        self.driver = driver
        self.now = now
        self.precise = precise
        self.wall = wall
        self.timeout_ms = int(route.per_request_timeout * 1000) if route.per_request_timeout else None
        self.reader = RequestReader(self.max_header_bytes, self.max_header_count)
        self.state = CONN_NEW
        self.queue: deque[Exchange] = deque()
        self.current: Exchange | None = None
        self.backlog_bytes = 0
        self.read_block = 0
        self.write_paused = False
        self.draining = False
        self.relay: Upstream | None = None  # upgraded: raw bytes to and from this upstream
        self.last_active = 0.0
        self.armed = 0  # bit set of armed timers (1 << Timer)
        self.bytes_in = 0
        self.obuf: list[bytes] | None = None  # output collected while handling one batch of events
        self.first_head = False  # the first request head (or a refusal) has been read
        self.peer = "-"  # the caller's mutual-TLS identity

    # --- timers
    def _arm(self, timer: Timer, at: float) -> None:
        self.armed |= 1 << timer
        self.driver.arm_timer(timer, at)

    def _disarm(self, timer: Timer) -> None:
        if self.armed & (1 << timer):
            self.armed &= ~(1 << timer)
            self.driver.cancel_timer(timer)

    def timer_fired(self, timer: Timer) -> None:
        self.armed &= ~(1 << timer)
        if timer is Timer.IDLE:
            self._check_idle()
        elif timer is Timer.HEADER:
            self._on_header_timeout()
        else:
            self._check_deadline()

    # --- client connection events
    def connection_made(self, peer: str = "-") -> None:
        self.state = CONN_OPEN
        self.peer = peer
        self.stats.new_connections.inc()
        self.stats.active_connections.inc()
        now = self.last_active = self.now()
        idle = self.route.idle_timeout
        if idle is not None:
            self._arm(Timer.IDLE, now + idle)
        if self.draining:
            self._close()
            return
        self._arm_header_timer()  # the first request head is due within headerTimeoutSeconds

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        relay = self.relay
        if relay is not None:
            self.last_active = self.now()
            relay.write(data)
            return
        if self.read_block & R_UPGRADE:
            self.last_active = self.now()
            cur = self.current
            if cur is not None and cur.upgrade_rest is not None:
                cur.upgrade_rest += data
            return
        reader = self.reader
        events = reader.feed(data)
        if events or not reader.between_requests:
            # Empty lines between requests are not activity: a trickle of them must not hold the connection.
            self.last_active = self.now()
        if len(events) > 2:  # pipelined requests: their (local) answers go out in one write
            self.obuf = []
        for ev in events:
            if ev.__class__ is RequestHead:
                self._on_head(ev)
            elif ev.__class__ is bytes:
                if ev is END or not ev:
                    self._on_request_end()
                else:
                    self._on_body(ev)
            elif ev.__class__ is Upgraded:
                self._on_upgrade_request(ev)
            else:
                assert isinstance(ev, ParseError)
                self._on_parse_error(ev)
        if self.obuf is not None:
            self._flush()
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        """Time the client's partial request head (or, on a new connection, the first one), but only while we
        read: when the proxy stops reading (pipelined requests backed up), a head left half-read is our delay,
        not a slow client's."""
        if (self.reader.in_head or not self.first_head) and not self.read_block:
            if not self.armed & _HEADER_ARMED and self.state is CONN_OPEN:
                self._arm(Timer.HEADER, self.now() + self.header_timeout)
        elif self.armed & _HEADER_ARMED:
            self._disarm(Timer.HEADER)

    def eof_received(self) -> bool:
        """Client half-closed; returns whether to keep the connection open (to finish the response)."""
        if self.current is None and not self.queue:
            return False
        relay = self.relay
        if self.queue and not self.queue[-1].request_complete and relay is None:
            # The request body can never complete: nothing sensible can be answered.
            self.abort()
            return False
        if relay is not None:
            relay.write_eof()
            return True
        self._block_reading(R_DONE)
        for ex in self.queue:
            ex.close_after = True
        return True

    def connection_lost(self) -> None:
        self.state = CONN_CLOSED
        self.stats.active_connections.dec()
        for timer in Timer:
            self._disarm(timer)
        if self.relay is not None:
            self.stats.processed_bytes.inc(self.bytes_in)
            self.relay.close()
            self.relay = None
        cur = self.current
        if cur is not None and cur.phase < DONE:
            cur.go(ABORTED)
            cur.close_after = True
            if cur.conn is not None:
                cur.conn.abort()
                cur.conn = None
            self._account(cur, flags="DC")
        self.queue.clear()
        self.current = None

    def writing_paused(self) -> None:
        """The client's write buffer is full: stop reading the upstream feeding it."""
        self.write_paused = True
        conn = self.relay or (self.current.conn if self.current is not None else None)
        if conn is not None:
            conn.pause_reading()

    def writing_resumed(self) -> None:
        self.write_paused = False
        conn = self.relay or (self.current.conn if self.current is not None else None)
        if conn is not None and not conn.closed:
            conn.resume_reading()

    # --- lifecycle (Drainable)
    def drain(self) -> None:
        """Stop keep-alive: close now when idle, else after the response in flight."""
        self.draining = True
        if self.state is CONN_NEW:
            return
        if self.current is None and not self.queue and not self.reader.in_head:
            self._close()
        else:
            for ex in self.queue:
                ex.close_after = True

    def abort(self) -> None:
        self.obuf = None
        if self.relay is not None:
            self.relay.abort()
        cur = self.current
        if cur is not None and cur.conn is not None:
            cur.conn.abort()
        if self.state is not CONN_NEW:
            self.driver.reset()

    # --- reading control
    def _block_reading(self, reason: int) -> None:
        if not self.read_block and (self.state is CONN_OPEN or self.state is CONN_RELAY):
            self.driver.pause_reading()
        self.read_block |= reason
        self._arm_header_timer()  # stops it

    def _unblock_reading(self, reason: int) -> None:
        if not self.read_block & reason:
            return
        self.read_block &= ~reason
        if not self.read_block and (self.state is CONN_OPEN or self.state is CONN_RELAY):
            self.driver.resume_reading()
            self._arm_header_timer()  # a full headerTimeoutSeconds again for a head left half-read

    def _check_backlog(self) -> None:
        full = len(self.queue) > MAX_PIPELINE or self.backlog_bytes > MAX_BACKLOG_BYTES
        if full:
            self._block_reading(R_BACKLOG)
        else:
            self._unblock_reading(R_BACKLOG)

    # --- request side
    def _on_head(self, head: RequestHead) -> None:
        self.first_head = True
        ex = Exchange(head, None, self.precise(), self.route.retries)
        if not head.keep_alive:
            ex.close_after = True
            self._block_reading(R_DONE)  # nothing after a "Connection: close" request is read
        if self.draining:
            ex.close_after = True
        self.queue.append(ex)
        if self.current is None:
            self._start(ex)
        elif len(self.queue) > MAX_PIPELINE:
            self._check_backlog()

    def _on_body(self, data: bytes) -> None:
        if not self.queue:
            return  # the request was answered early (e.g. 503) and the connection is closing
        ex = self.queue[-1]
        ex.body_in += len(data)
        if ex.replayable and not policy.may_replay_body(ex.body_in, self.route.max_replay_body_bytes):
            ex.replayable = False
            if ex.conn is not None:
                ex.chunks.clear()  # already written upstream; too big to replay anyway
        conn = ex.conn
        if conn is not None and ex is self.current:
            conn.write(hdr.chunk(data) if ex.head is not None and ex.head.chunked else data)
            if ex.replayable:
                ex.chunks.append(data)
        elif ex.phase < DONE:
            ex.chunks.append(data)
            ex.backlog += len(data)
            self.backlog_bytes += len(data)
            if self.backlog_bytes > MAX_BACKLOG_BYTES:
                self._check_backlog()

    def _on_request_end(self) -> None:
        if not self.queue:
            return
        ex = self.queue[-1]
        ex.request_complete = True
        conn = ex.conn
        if conn is not None and ex is self.current and ex.head is not None and ex.head.chunked:
            conn.write(hdr.LAST_CHUNK)

    def _on_upgrade_request(self, ev: Upgraded) -> None:
        if not self.queue:
            return
        ex = self.queue[-1]
        ex.upgrade_rest = ev.rest
        self._block_reading(R_UPGRADE)

    def _on_parse_error(self, err: ParseError) -> None:
        self.first_head = True
        if err.protection is not None:
            protection_counter(err.protection).inc()
        self._block_reading(R_DONE)
        last = self.queue[-1] if self.queue else None
        if last is not None and not last.request_complete:
            # The error is inside the last request's body (e.g. a bad chunk size): it cannot complete.
            last.close_after = True
            if last is not self.current:
                last.error = err
            elif last.phase >= STREAMING:
                self.abort()
            else:
                self.stats.rejected.inc()
                self._local_reply(last, err.status, err.reason, close=True)
            return
        ex = Exchange(None, err, self.precise(), 0)
        ex.close_after = True
        self.queue.append(ex)
        if self.current is None:
            self._start(ex)

    def _on_header_timeout(self) -> None:
        if self.state is CONN_CLOSED:
            return
        if self.reader.in_head:
            self.reader.finished = True
            self.stats.rejected.inc()
            self._on_parse_error(
                ParseError(
                    408, "request headers not received within headerTimeoutSeconds", "http1_header_timeout"
                )
            )
        elif not self.first_head:
            # Nothing but (perhaps) empty lines since the connection opened: close it, nothing to answer.
            protection_counter("http1_header_timeout").inc()
            self._log_refused_connection("http1_header_timeout")
            self._close()

    def _log_refused_connection(self, protection: str) -> None:
        log = self.route.access_log
        if log is not None:
            log.log(
                AccessRecord(
                    start_time=self.wall() - self.header_timeout,  # when the connection opened
                    direction=self.route.direction,
                    name=self.route.name,
                    response_flags="DPE",  # Envoy's "downstream protocol error"
                    duration_ms=int(self.header_timeout * 1000),
                    protection=protection,
                )
            )

    def _check_idle(self) -> None:
        idle = self.route.idle_timeout
        if idle is None or self.state is CONN_CLOSED:
            return
        now = self.now()
        due = self.last_active + idle
        if now < due:
            self._arm(Timer.IDLE, due)
            return
        cur = self.current
        if cur is None or cur.phase >= DONE:
            self._close()
            return
        # Nothing moved for idleTimeout while a request was in flight: idle wins over perRequest.
        self.stats.timeouts.inc()
        if cur.phase >= STREAMING:
            self.abort()
        else:
            self._local_reply(cur, 504, "", close=True)

    # --- exchange lifecycle
    def _start(self, ex: Exchange) -> None:
        self.current = ex
        if ex.error is not None:
            err = ex.error
            if err.status == 426:
                self.stats.http10_refused.inc()
            elif err.status != 408:
                self.stats.rejected.inc()
            self._local_reply(ex, err.status, "" if err.status == 426 else err.reason, close=True)
            return
        head = ex.head
        assert head is not None
        rid = head.request_id
        ex.has_rid = rid is not None
        ex.request_id = rid if rid is not None else hdr.new_request_id()
        per_request = self.route.per_request_timeout
        if per_request:
            ex.deadline = self.last_active + per_request  # "now": set by the event we run in
            if not self.armed & _REQUEST_ARMED:
                self._arm(Timer.REQUEST, ex.deadline)
        self._attempt(ex)

    def _check_deadline(self) -> None:
        ex = self.current
        if ex is None or ex.phase >= DONE or not ex.deadline or self.state is CONN_CLOSED:
            return  # the next request arms the timer again
        if self.now() < ex.deadline:
            self._arm(Timer.REQUEST, ex.deadline)
            return
        ex.deadline = 0.0
        self._on_request_timeout(ex)

    def _attempt(self, ex: Exchange) -> None:
        last = ex.host  # the host that just failed, on a retry
        host = self.cluster.pick() if last is None else self.cluster.pick_retry(ex.tried, last)
        if host is None:
            self._local_reply(ex, 503, "no healthy upstream" if not ex.tried else "", close=False)
            return
        ex.host = host
        conn = self.pool.take(host)
        if conn is not None:
            self._attach(ex, conn)
            return
        ex.go(CONNECTING)
        self.driver.connect(ex, host)

    # --- connection attempts (reported by the driver)
    def upstream_connected(self, ex: Exchange, host: Host, conn: Upstream) -> None:
        if conn.closed:
            # Closed before anything was written: the task, or a gateway in front of it that could not
            # reach it, hung up. A failed connection like any other (writing to it would wait forever).
            self.upstream_connect_failed(ex, host, None)
            return
        if ex is not self.current or ex.phase is not CONNECTING or self.state is CONN_CLOSED:
            self.pool.put(conn)  # fresh and idle: keep it for the next request
            return
        self._attach(ex, conn)

    def upstream_connect_failed(self, ex: Exchange, host: Host, tls_failure: str | None) -> None:
        """Connecting to ``host`` failed; ``tls_failure`` is the reason when the TLS handshake failed (a
        failed handshake is a failed connection: retried and reported to outlier detection)."""
        self.stats.connect_failures.inc()
        if tls_failure is not None:
            self.stats.tls_errors.inc()
            ex.failure = tls_failure
        self.cluster.report_failure(host)
        if ex is self.current and ex.phase is CONNECTING and self.state is not CONN_CLOSED:
            self._retry_or_fail(ex, host, 503)

    def _attach(self, ex: Exchange, conn: Upstream) -> None:
        head = ex.head
        assert head is not None
        ex.go(SENT)
        ex.conn = conn
        conn.bind(self, head.method == b"HEAD", self.max_header_bytes, self.max_header_count)
        out = hdr.upstream_request_head(head, ex.request_id, self.timeout_ms, has_request_id=ex.has_rid)
        chunks = ex.chunks
        if chunks:
            if head.chunked:
                out += b"".join([hdr.chunk(c) for c in chunks])
            else:
                out += b"".join(chunks)
            if ex.backlog:
                self.backlog_bytes -= ex.backlog
                ex.backlog = 0
                self._check_backlog()
            if not ex.replayable:
                chunks.clear()
        if ex.request_complete and head.chunked:
            out += hdr.LAST_CHUNK
        ex.sent_at = self.precise()
        conn.write(out)
        if self.write_paused:
            conn.pause_reading()

    def _retry_or_fail(self, ex: Exchange, host: Host, status: int) -> None:
        """After a failure of ``host`` before any response byte reached the client."""
        if ex.conn is not None:
            ex.conn.abort()
            ex.conn = None
        self._unblock_reading(R_UPSTREAM)
        # Never sent anywhere (connect failures only): every body byte is still held, whatever its size.
        replayable = ex.replayable or ex.sent_at == 0.0
        if policy.may_retry(ex.attempts_left, replayable, ex.phase >= STREAMING):
            ex.attempts_left -= 1
            ex.tried = ex.tried | {host}
            self.stats.retries.inc()
            self._attempt(ex)
            return
        self._local_reply(ex, status, "", close=not ex.request_complete)

    def _on_request_timeout(self, ex: Exchange) -> None:
        if ex.phase >= DONE or self.state is CONN_CLOSED:
            return
        self.stats.timeouts.inc()
        if ex.conn is not None:
            ex.conn.abort()
            ex.conn = None
        if ex is not self.current:
            return
        if ex.phase >= STREAMING:
            self.abort()  # the head is out: all we can do is cut the response short
            return
        self._local_reply(ex, 504, "", close=not ex.request_complete)

    def _local_reply(self, ex: Exchange, status: int, detail: str, *, close: bool) -> None:
        """Answer ``ex`` ourselves (the proxy's own error responses)."""
        ex.go(DONE)
        if ex.conn is not None:
            ex.conn.abort()
            ex.conn = None
        close = close or ex.close_after or self.draining or not ex.request_complete
        ex.close_after = close
        body = hdr.error_response(status, detail, close=close, request_id=ex.request_id or None)
        ex.status = status
        ex.bytes_out = len(body)
        self._write(body)
        self._finish(ex)

    def _write(self, data: bytes) -> None:
        obuf = self.obuf
        if obuf is not None:
            obuf.append(data)
            return
        if self.state is CONN_OPEN or self.state is CONN_RELAY:
            self.driver.write(data)

    def _flush(self) -> None:
        obuf = self.obuf
        self.obuf = None
        if obuf:
            self._write(obuf[0] if len(obuf) == 1 else b"".join(obuf))

    def _finish(self, ex: Exchange) -> None:
        """The response is complete: account, release the upstream, go on with the next request."""
        if not ex.request_complete and not ex.close_after:
            # Response done before the request body: we cannot tell where the next request would start.
            ex.close_after = True
        now = self._account(ex)
        conn = ex.conn
        ex.conn = None
        if conn is not None:
            conn.close()
        self._unblock_reading(R_UPSTREAM)
        if ex.backlog:
            self.backlog_bytes -= ex.backlog
            ex.backlog = 0
        ex.chunks = []
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        self.current = None
        if ex.close_after or self.state is CONN_CLOSED:
            self._close()
            return
        self.last_active = now
        if self.queue:
            self._start(self.queue[0])
        if self.read_block & R_BACKLOG:
            self._check_backlog()

    def _account(self, ex: Exchange, flags: str = "-") -> float:
        """Count the finished exchange (and log it); returns the timer clock's "now" it used."""
        stats = self.stats
        stats.request_count.value += 1  # the counters' inc() inlined: this runs once per request
        if ex.status:
            stats.count_status(ex.status)
        now = self.now()
        end = self.precise()
        elapsed_ms = (end - ex.start) * 1000.0
        stats.response_time_ms.observe(elapsed_ms)
        stats.processed_bytes.value += ex.body_in + ex.bytes_out
        log = self.route.access_log
        if log is None:
            return now
        start_wall = self.wall() - (end - ex.start)
        if ex.head is not None:
            head = ex.head
            service_ms = int((end - ex.sent_at) * 1000) if ex.sent_at else None
            if ex.protection is not None and flags == "-":
                flags = "UPE"  # a defence refused the upstream's response: Envoy's "upstream protocol error"
            failure = ex.failure if not ex.sent_at else None
            if failure is not None and flags == "-":
                flags = "UF"  # Envoy's "upstream connection failure"
            log.log(
                AccessRecord(
                    start_time=start_wall,
                    direction=self.route.direction,
                    name=self.route.name,
                    method=head.method.decode("latin-1"),
                    path=head.target.decode("latin-1"),
                    protocol="HTTP/1.1",
                    status=ex.status,
                    response_flags=flags,
                    bytes_received=ex.body_in,
                    bytes_sent=ex.bytes_out,
                    duration_ms=int(elapsed_ms),
                    upstream_service_time_ms=service_ms,
                    user_agent=_header(head, b"user-agent"),
                    forwarded_for=_header(head, b"x-forwarded-for"),
                    request_id=ex.request_id.decode("latin-1"),
                    authority=_header(head, b"host"),
                    upstream_host=str(ex.host) if ex.host is not None else "-",
                    protection=ex.protection or "-",
                    transport_failure=failure or "-",
                    peer_identity=self.peer,
                )
            )
        elif ex.error is not None:
            log.log(
                AccessRecord(
                    start_time=start_wall,
                    direction=self.route.direction,
                    name=self.route.name,
                    status=ex.status,
                    response_flags="DPE",  # Envoy's "downstream protocol error"
                    bytes_sent=ex.bytes_out,
                    duration_ms=int(elapsed_ms),
                    protection=ex.protection or "-",
                )
            )
        return now

    def _close(self) -> None:
        self._flush()
        if self.state is not CONN_NEW:
            self.driver.close()
        self._block_reading(R_DONE)

    # --- upstream events (UpstreamOwner)
    def upstream_events(self, conn: Upstream, events: list[ResponseEvent]) -> None:
        # Collect what these events produce and write it once: one send per response, not per piece.
        self.obuf = []
        try:
            self._upstream_events(conn, events)
        finally:
            self._flush()

    def _upstream_events(self, conn: Upstream, events: list[ResponseEvent]) -> None:
        ex = self.current
        if ex is None or ex.conn is not conn:
            conn.abort()
            return
        self.last_active = self.now()
        for ev in events:
            if ev.__class__ is bytes:
                if ev:
                    data: bytes = ev
                    ex.bytes_out += len(data)
                    self._write(hdr.chunk(data) if ex.chunked_out else data)
                    continue
                self._on_response_end(ex, conn)
                if ex.phase >= DONE:
                    return
            elif ev.__class__ is ResponseHead:
                if not self._on_response_head(ex, conn, ev):
                    return
            elif ev.__class__ is Upgraded:
                self._on_upgraded(ex, conn, ev)
                return
            else:
                assert isinstance(ev, ParseError)
                self.cluster.report_failure(conn.host)
                if ev.protection is not None:
                    protection_counter(ev.protection).inc()
                    ex.protection = ev.protection
                if ex.phase >= STREAMING:
                    self.abort()
                else:
                    self._local_reply(ex, 502, "", close=True)
                return

    def _on_response_head(self, ex: Exchange, conn: Upstream, resp: ResponseHead) -> bool:
        status = resp.status
        if status < 200 and status != 101:
            if status == 100 and ex.head is not None and ex.head.expect_continue and ex.phase < STREAMING:
                self._write(hdr.CONTINUE)
            return True
        host = conn.host
        if policy.is_outlier_status(status):
            self.cluster.report_failure(host)
            if (
                policy.may_retry_status(status, self.route.retry_on_503)
                and ex.request_complete
                and policy.may_retry(ex.attempts_left, ex.replayable, ex.phase >= STREAMING)
            ):
                self._retry_or_fail(ex, host, status)
                return False
        ex.go(STREAMING)
        ex.status = status
        if status == 101:
            ex.deadline = 0.0  # an upgraded connection has no request timeout
        head = ex.head
        assert head is not None
        is_head = head.method == b"HEAD"
        ex.chunked_out = not is_head and (resp.chunked or resp.close_delimited)
        ex.up_keep_alive = resp.keep_alive
        close = (
            ex.close_after
            or self.draining
            or (not ex.request_complete and status != 101)
            or (head.upgrade and status != 101)  # we stopped parsing at the upgrade request
        )
        ex.close_after = close
        service_ms = int((self.precise() - ex.sent_at) * 1000)
        self._write(
            hdr.downstream_response_head(
                resp,
                service_ms,
                chunked=ex.chunked_out or (is_head and resp.chunked),
                close=close,
                upgrade=status == 101,
            )
        )
        return True

    def _on_response_end(self, ex: Exchange, conn: Upstream) -> None:
        if ex.status == 0:
            return  # end of an interim (1xx) response
        if ex.status == 101:
            return  # the Upgraded event follows
        if ex.chunked_out:
            self._write(hdr.LAST_CHUNK)
        ex.go(DONE)
        ex.conn = None
        if ex.request_complete and ex.up_keep_alive and not conn.closed:
            if self.write_paused:
                conn.resume_reading()  # paused for our client; the pool needs to see a close
            self.pool.put(conn)
        else:
            conn.close()
        self._finish(ex)

    def _on_upgraded(self, ex: Exchange, conn: Upstream, ev: Upgraded) -> None:
        """101 from the upstream: the connection becomes a byte relay in both directions."""
        ex.go(UPGRADED)
        self._account(ex)
        ex.conn = None
        self.queue.clear()
        self.current = None
        self.relay = conn
        self.state = CONN_RELAY
        conn.raw = True
        if ev.rest:
            self._write(ev.rest)
        if ex.upgrade_rest:
            conn.write(ex.upgrade_rest)
        self.bytes_in = 0
        self._unblock_reading(R_UPGRADE)

    def upstream_raw(self, conn: Upstream, data: bytes) -> None:
        self.last_active = self.now()
        self.stats.processed_bytes.inc(len(data))
        self._write(data)

    def upstream_lost(self, conn: Upstream) -> None:
        if self.relay is conn:
            self.relay = None
            self._close()
            return
        ex = self.current
        if ex is None or ex.conn is not conn or ex.phase >= DONE:
            return
        events = conn.feed_eof()
        if events and events[0] is END and ex.phase >= STREAMING:
            self.upstream_events(conn, events)
            return
        self.cluster.report_failure(conn.host)
        ex.conn = None
        if ex.phase >= STREAMING:
            self.abort()  # reset mid-response: the client must see the truncation
            return
        if not conn.received:
            self._retry_or_fail(ex, conn.host, 502)
        else:
            self._local_reply(ex, 502, "", close=True)

    def upstream_flow(self, conn: Upstream, paused: bool) -> None:
        if paused:
            self._block_reading(R_UPSTREAM)
        else:
            self._unblock_reading(R_UPSTREAM)


def _header(head: RequestHead, lname: bytes) -> str:
    """The first end-to-end field ``lname`` (lower case) of ``head``, for the access log."""
    lines = head.lines
    for i in range(0, len(lines), 4):
        if lines[i].lower() == lname:
            return lines[i + 2].decode("latin-1")
    return "-"
