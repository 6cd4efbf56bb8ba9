"""The downstream HTTP/1.1 connection: parse requests, proxy each to a task, answer in order.

One :class:`Http1Connection` per accepted client connection. Requests are proxied one at a time in
arrival order (pipelined requests wait in a bounded queue; reading pauses when it is full), bodies stream in
both directions with back-pressure (a slow reader on one side pauses reading on the other), and every
policy of the route applies per request: round robin, retries to another task (connect failure, reset before
any response byte, 503) when the body can be replayed, outlier reports, perRequestTimeout (504) and
idleTimeout (closes the connection; 504 when a request was waiting).

Timers that a client cannot hold open (``limits.headerTimeoutSeconds``, the route's idleTimeout):

- the first request head must be complete within headerTimeoutSeconds of the connection opening (a
  connection that sends nothing, or only empty lines, is closed then, without a response);
- after a response, the wait for the next request is the idleTimeout (ECS's keep-alive semantics, as
  Envoy's idle_timeout and Go's IdleTimeout); from the next request's first byte, its head must be complete
  within headerTimeoutSeconds (Envoy's request_headers_timeout), else 408;
- empty lines before a request line are not activity: they extend neither timer (and more than
  :data:`~sc_proxy.http1.parse.MAX_EMPTY_LINES` are refused).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Final, cast

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
from sc_proxy.http1.pool import Pool, UpstreamConn, new_pool
from sc_proxy.metrics import protection_counter
from sc_proxy.pools import pool_for
from sc_proxy.route import Route
from sc_proxy.tls import failure_reason, peer_identity

#: Parsed requests waiting behind the one in flight before reading pauses.
MAX_PIPELINE: Final = 16
#: Request body bytes held for requests not yet sent upstream before reading pauses.
MAX_BACKLOG_BYTES: Final = 256 * 1024

_NO_HOSTS: Final[frozenset[Host]] = frozenset()

# Reasons to keep the client's socket from being read (reading resumes when none is left).
_R_BACKLOG: Final = 1  # pipeline queue or unsent body backlog full
_R_UPSTREAM: Final = 2  # upstream's write buffer is full
_R_UPGRADE: Final = 4  # upgrade requested, waiting for the 101
_R_DONE: Final = 8  # no more requests will be read (error or closing)


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
        "protection",
        "replayable",
        "request_complete",
        "request_id",
        "response_done",
        "response_started",
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
        self.head = head
        self.error = error
        # perf_counter time of the request head: uvloop's loop.time() moves in whole milliseconds, too
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
        self.conn: UpstreamConn | None = None
        self.host: Host | None = None
        self.tried: frozenset[Host] = _NO_HOSTS
        self.sent_at = 0.0
        self.response_started = False
        self.response_done = False
        self.chunked_out = False
        self.close_after = False
        self.status = 0
        self.bytes_out = 0
        self.deadline = 0.0  # loop time when perRequestTimeout fires; 0 = none
        self.upgrade_rest: bytes | None = None
        self.protection = error.protection if error is not None else None  # the defence that refused it
        self.failure: str | None = None  # the last failed TLS handshake with a task (access log)


class Http1Connection(asyncio.Protocol):
    """Server side of one client connection (registered with the route's lifecycle while open)."""

    __slots__ = (
        "backlog_bytes",
        "bytes_in",
        "closing",
        "cluster",
        "current",
        "draining",
        "first_head",
        "header_timeout",
        "header_timer",
        "idle_timer",
        "last_active",
        "loop",
        "max_header_bytes",
        "max_header_count",
        "obuf",
        "peer",
        "pool",
        "queue",
        "read_block",
        "reader",
        "relay",
        "request_timer",
        "route",
        "stats",
        "timeout_ms",
        "transport",
        "write_paused",
    )

    def __init__(self, route: Route) -> None:
        self.route = route
        self.stats = route.stats
        self.cluster = route.cluster
        limits = route.limits
        self.max_header_bytes = limits.max_header_bytes
        self.max_header_count = limits.max_header_count
        self.header_timeout = limits.header_timeout_seconds
        self.pool: Pool = pool_for(route, "http1", new_pool)
        self.timeout_ms = int(route.per_request_timeout * 1000) if route.per_request_timeout else None
        self.reader = RequestReader(self.max_header_bytes, self.max_header_count)
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Exchange] = deque()
        self.current: Exchange | None = None
        self.backlog_bytes = 0
        self.read_block = 0
        self.write_paused = False
        self.closing = False
        self.draining = False
        self.relay: UpstreamConn | None = None  # upgraded: raw bytes to and from this upstream
        self.last_active = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.header_timer: asyncio.TimerHandle | None = None
        # One lazily re-armed timer for perRequestTimeout instead of a timer per request.
        self.request_timer: asyncio.TimerHandle | None = None
        self.bytes_in = 0
        self.obuf: list[bytes] | None = None  # output collected while handling one batch of events
        self.first_head = False  # the first request head (or a refusal) has been read
        self.peer = "-"  # the caller's mutual-TLS identity

    # --- asyncio.Protocol (downstream)
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)
        self.stats.new_connections.inc()
        self.stats.active_connections.inc()
        if self.route.caller_identity:
            self.peer = peer_identity(transport) or "-"
        self.route.lifecycle.register(self)
        now = self.last_active = self.loop.time()
        idle = self.route.idle_timeout
        if idle is not None:
            self.idle_timer = self.loop.call_at(now + idle, self._check_idle)
        if self.draining:
            self._close()
            return
        self._arm_header_timer()  # the first request head is due within headerTimeoutSeconds

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        relay = self.relay
        if relay is not None:
            self.last_active = self.loop.time()
            relay.write(data)
            return
        if self.read_block & _R_UPGRADE:
            self.last_active = self.loop.time()
            cur = self.current
            if cur is not None and cur.upgrade_rest is not None:
                cur.upgrade_rest += data
            return
        reader = self.reader
        events = reader.feed(data)
        if events or not reader.between_requests:
            # Empty lines between requests are not activity: a trickle of them must not hold the connection.
            self.last_active = self.loop.time()
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
            if self.header_timer is None:
                self.header_timer = self.loop.call_later(self.header_timeout, self._on_header_timeout)
        elif self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def eof_received(self) -> bool | None:
        # Client half-closed. With nothing in flight we are done; otherwise finish the response, then close.
        if self.current is None and not self.queue:
            return False
        if self.queue and not self.queue[-1].request_complete and self.relay is None:
            # The request body can never complete: nothing sensible can be answered.
            self.abort()
            return False
        if self.relay is not None:
            transport = self.relay.transport
            if transport is not None and transport.can_write_eof():
                transport.write_eof()
            return True
        self._block_reading(_R_DONE)
        for ex in self.queue:
            ex.close_after = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.stats.active_connections.dec()
        self.route.lifecycle.unregister(self)
        for timer in (self.idle_timer, self.header_timer, self.request_timer):
            if timer is not None:
                timer.cancel()
        self.idle_timer = self.header_timer = self.request_timer = None
        if self.relay is not None:
            self.stats.processed_bytes.inc(self.bytes_in)
            self.relay.close()
            self.relay = None
        cur = self.current
        if cur is not None and not cur.response_done:
            cur.close_after = True
            if cur.conn is not None:
                cur.conn.abort()
                cur.conn = None
            self._account(cur, flags="DC")
        self.queue.clear()
        self.current = None

    def pause_writing(self) -> None:
        self.write_paused = True
        conn = self.relay or (self.current.conn if self.current is not None else None)
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        conn = self.relay or (self.current.conn if self.current is not None else None)
        if conn is not None and conn.transport is not None and not conn.closed:
            conn.transport.resume_reading()

    # --- Drainable
    def drain(self) -> None:
        """Stop keep-alive: close now when idle, else after the response in flight."""
        self.draining = True
        if self.transport is None:
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
        if self.transport is not None:
            self.transport.abort()

    # --- reading control
    def _block_reading(self, reason: int) -> None:
        if not self.read_block and self.transport is not None and not self.closing:
            self.transport.pause_reading()
        self.read_block |= reason
        self._arm_header_timer()  # stops it

    def _unblock_reading(self, reason: int) -> None:
        if not self.read_block & reason:
            return
        self.read_block &= ~reason
        if not self.read_block and self.transport is not None and not self.closing:
            self.transport.resume_reading()
            self._arm_header_timer()  # a full headerTimeoutSeconds again for a head left half-read

    def _check_backlog(self) -> None:
        full = len(self.queue) > MAX_PIPELINE or self.backlog_bytes > MAX_BACKLOG_BYTES
        if full:
            self._block_reading(_R_BACKLOG)
        else:
            self._unblock_reading(_R_BACKLOG)

    # --- request side
    def _on_head(self, head: RequestHead) -> None:
        self.first_head = True
        ex = Exchange(head, None, time.perf_counter(), self.route.retries)
        if not head.keep_alive:
            ex.close_after = True
            self._block_reading(_R_DONE)  # nothing after a "Connection: close" request is read
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
        elif not ex.response_done:
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
        self._block_reading(_R_UPGRADE)

    def _on_parse_error(self, err: ParseError) -> None:
        self.first_head = True
        if err.protection is not None:
            protection_counter(err.protection).inc()
        self._block_reading(_R_DONE)
        last = self.queue[-1] if self.queue else None
        if last is not None and not last.request_complete:
            # The error is inside the last request's body (e.g. a bad chunk size): it cannot complete.
            last.close_after = True
            if last is not self.current:
                last.error = err
            elif last.response_started:
                self.abort()
            else:
                self.stats.rejected.inc()
                self._local_reply(last, err.status, err.reason, close=True)
            return
        ex = Exchange(None, err, time.perf_counter(), 0)
        ex.close_after = True
        self.queue.append(ex)
        if self.current is None:
            self._start(ex)

    def _on_header_timeout(self) -> None:
        self.header_timer = None
        if self.closing:
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
                    start_time=time.time() - self.header_timeout,  # when the connection opened
                    direction=self.route.direction,
                    name=self.route.name,
                    response_flags="DPE",  # Envoy's "downstream protocol error"
                    duration_ms=int(self.header_timeout * 1000),
                    protection=protection,
                )
            )

    def _check_idle(self) -> None:
        self.idle_timer = None
        idle = self.route.idle_timeout
        if idle is None or self.closing:
            return
        now = self.loop.time()
        due = self.last_active + idle
        if now < due:
            self.idle_timer = self.loop.call_at(due, self._check_idle)
            return
        cur = self.current
        if cur is None or cur.response_done:
            self._close()
            return
        # Nothing moved for idleTimeout while a request was in flight: idle wins over perRequest.
        self.stats.timeouts.inc()
        if cur.response_started:
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
            ex.deadline = self.last_active + per_request  # "now": set by the callback we run in
            if self.request_timer is None:
                self.request_timer = self.loop.call_at(ex.deadline, self._check_deadline)
        self._attempt(ex)

    def _check_deadline(self) -> None:
        self.request_timer = None
        ex = self.current
        if ex is None or ex.response_done or not ex.deadline or self.closing:
            return  # the next request arms the timer again
        if self.loop.time() < ex.deadline:
            self.request_timer = self.loop.call_at(ex.deadline, self._check_deadline)
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
        task = self.loop.create_task(self.pool.connect(host))
        task.add_done_callback(lambda t: self._on_connected(ex, host, t))

    def _on_connected(self, ex: Exchange, host: Host, task: asyncio.Task[UpstreamConn]) -> None:
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            self.stats.connect_failures.inc()
            if isinstance(exc, ssl.SSLError):
                # A failed handshake is a failed connection: retried and reported to outlier detection.
                self.stats.tls_errors.inc()
                ex.failure = failure_reason(exc)
            self.cluster.report_failure(host)
            if ex is self.current and not ex.response_done and not self.closing:
                self._retry_or_fail(ex, host, 503)
            return
        conn = task.result()
        if conn.closed:
            # Closed before anything was written: the task, or a gateway in front of it that could not
            # reach it, hung up. A failed connection like any other (writing to it would wait forever).
            self.stats.connect_failures.inc()
            self.cluster.report_failure(host)
            if ex is self.current and not ex.response_done and not self.closing:
                self._retry_or_fail(ex, host, 503)
            return
        if ex is not self.current or ex.response_done or self.closing:
            self.pool.put(conn)  # fresh and idle: keep it for the next request
            return
        self._attach(ex, conn)

    def _attach(self, ex: Exchange, conn: UpstreamConn) -> None:
        head = ex.head
        assert head is not None
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
        ex.sent_at = time.perf_counter()
        conn.write(out)
        if self.write_paused and conn.transport is not None:
            conn.transport.pause_reading()

    def _retry_or_fail(self, ex: Exchange, host: Host, status: int) -> None:
        """After a failure of ``host`` before any response byte reached the client."""
        if ex.conn is not None:
            ex.conn.abort()
            ex.conn = None
        self._unblock_reading(_R_UPSTREAM)
        # Never sent anywhere (connect failures only): every body byte is still held, whatever its size.
        replayable = ex.replayable or ex.sent_at == 0.0
        if policy.may_retry(ex.attempts_left, replayable, ex.response_started):
            ex.attempts_left -= 1
            ex.tried = ex.tried | {host}
            self.stats.retries.inc()
            self._attempt(ex)
            return
        self._local_reply(ex, status, "", close=not ex.request_complete)

    def _on_request_timeout(self, ex: Exchange) -> None:
        if ex.response_done or self.closing:
            return
        self.stats.timeouts.inc()
        if ex.conn is not None:
            ex.conn.abort()
            ex.conn = None
        if ex is not self.current:
            return
        if ex.response_started:
            self.abort()  # the head is out: all we can do is cut the response short
            return
        self._local_reply(ex, 504, "", close=not ex.request_complete)

    def _local_reply(self, ex: Exchange, status: int, detail: str, *, close: bool) -> None:
        """Answer ``ex`` ourselves (the proxy's own error responses)."""
        if ex.conn is not None:
            ex.conn.abort()
            ex.conn = None
        close = close or ex.close_after or self.draining or not ex.request_complete
        ex.close_after = close
        body = hdr.error_response(status, detail, close=close, request_id=ex.request_id or None)
        ex.status = status
        ex.response_started = True
        ex.response_done = True
        ex.bytes_out = len(body)
        self._write(body)
        self._finish(ex)

    def _write(self, data: bytes) -> None:
        obuf = self.obuf
        if obuf is not None:
            obuf.append(data)
            return
        transport = self.transport
        if transport is not None and not self.closing:
            transport.write(data)

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
        self._unblock_reading(_R_UPSTREAM)
        if ex.backlog:
            self.backlog_bytes -= ex.backlog
            ex.backlog = 0
        ex.chunks = []
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        self.current = None
        if ex.close_after or self.closing:
            self._close()
            return
        self.last_active = now
        if self.queue:
            self._start(self.queue[0])
        if self.read_block & _R_BACKLOG:
            self._check_backlog()

    def _account(self, ex: Exchange, flags: str = "-") -> float:
        """Count the finished exchange (and log it); returns the loop time it used as "now"."""
        stats = self.stats
        stats.request_count.value += 1  # the counters' inc() inlined: this runs once per request
        if ex.status:
            stats.count_status(ex.status)
        now = self.loop.time()
        end = time.perf_counter()
        elapsed_ms = (end - ex.start) * 1000.0
        stats.response_time_ms.observe(elapsed_ms)
        stats.processed_bytes.value += ex.body_in + ex.bytes_out
        log = self.route.access_log
        if log is None:
            return now
        start_wall = time.time() - (end - ex.start)
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
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._block_reading(_R_DONE)

    # --- upstream callbacks (UpstreamOwner)
    def upstream_events(self, conn: UpstreamConn, events: list[ResponseEvent]) -> None:
        # Collect what these events produce and write it once: one send per response, not per piece.
        self.obuf = []
        try:
            self._upstream_events(conn, events)
        finally:
            self._flush()

    def _upstream_events(self, conn: UpstreamConn, events: list[ResponseEvent]) -> None:
        ex = self.current
        if ex is None or ex.conn is not conn:
            conn.abort()
            return
        self.last_active = self.loop.time()
        for ev in events:
            if ev.__class__ is bytes:
                if ev:
                    data: bytes = ev
                    ex.bytes_out += len(data)
                    self._write(hdr.chunk(data) if ex.chunked_out else data)
                    continue
                self._on_response_end(ex, conn)
                if ex.response_done:
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
                if ex.response_started:
                    self.abort()
                else:
                    self._local_reply(ex, 502, "", close=True)
                return

    def _on_response_head(self, ex: Exchange, conn: UpstreamConn, resp: ResponseHead) -> bool:
        status = resp.status
        if status < 200 and status != 101:
            if status == 100 and ex.head is not None and ex.head.expect_continue and not ex.response_started:
                self._write(hdr.CONTINUE)
            return True
        host = conn.host
        if policy.is_outlier_status(status):
            self.cluster.report_failure(host)
            if (
                policy.may_retry_status(status, self.route.retry_on_503)
                and ex.request_complete
                and policy.may_retry(ex.attempts_left, ex.replayable, ex.response_started)
            ):
                self._retry_or_fail(ex, host, status)
                return False
        ex.status = status
        ex.response_started = True
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
        service_ms = int((time.perf_counter() - ex.sent_at) * 1000)
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

    def _on_response_end(self, ex: Exchange, conn: UpstreamConn) -> None:
        if ex.status == 0:
            return  # end of an interim (1xx) response
        if ex.status == 101:
            return  # the Upgraded event follows
        if ex.chunked_out:
            self._write(hdr.LAST_CHUNK)
        ex.response_done = True
        ex.conn = None
        if ex.request_complete and ex.up_keep_alive and not conn.closed:
            if self.write_paused and conn.transport is not None:
                conn.transport.resume_reading()  # paused for our client; the pool needs to see a close
            self.pool.put(conn)
        else:
            conn.close()
        self._finish(ex)

    def _on_upgraded(self, ex: Exchange, conn: UpstreamConn, ev: Upgraded) -> None:
        """101 from the upstream: the connection becomes a byte relay in both directions."""
        ex.response_done = True
        self._account(ex)
        ex.conn = None
        self.queue.clear()
        self.current = None
        self.relay = conn
        conn.raw = True
        if ev.rest:
            self._write(ev.rest)
        if ex.upgrade_rest:
            conn.write(ex.upgrade_rest)
        self.bytes_in = 0
        self._unblock_reading(_R_UPGRADE)

    def upstream_raw(self, conn: UpstreamConn, data: bytes) -> None:
        self.last_active = self.loop.time()
        self.stats.processed_bytes.inc(len(data))
        self._write(data)

    def upstream_lost(self, conn: UpstreamConn) -> None:
        if self.relay is conn:
            self.relay = None
            self._close()
            return
        ex = self.current
        if ex is None or ex.conn is not conn or ex.response_done:
            return
        reader = conn.reader
        events = reader.feed_eof() if reader is not None else []
        if events and events[0] is END and ex.response_started:
            self.upstream_events(conn, events)
            return
        if ex.response_started:
            self.cluster.report_failure(conn.host)
            ex.conn = None
            self.abort()  # reset mid-response: the client must see the truncation
            return
        self.cluster.report_failure(conn.host)
        ex.conn = None
        status = 502
        if not conn.received:
            self._retry_or_fail(ex, conn.host, status)
        else:
            self._local_reply(ex, status, "", close=True)

    def upstream_flow(self, conn: UpstreamConn, paused: bool) -> None:
        if paused:
            self._block_reading(_R_UPSTREAM)
        else:
            self._unblock_reading(_R_UPSTREAM)


def _header(head: RequestHead, lname: bytes) -> str:
    """The first end-to-end field ``lname`` (lower case) of ``head``, for the access log."""
    lines = head.lines
    for i in range(0, len(lines), 4):
        if lines[i].lower() == lname:
            return lines[i + 2].decode("latin-1")
    return "-"


def http1_protocol_factory(route: Route) -> asyncio.Protocol:
    """The handler for ``appProtocol: http`` listeners (registered in the listeners' handler registry)."""
    return Http1Connection(route)
