"""One proxied HTTP/2 stream: a client stream on a downstream connection relayed to a stream on a pooled
upstream connection, with the per-request policies. The connections and the pool are given to it as the
shapes of :mod:`~sc_proxy.http2.interfaces`; it imports none of them.

Flow control: data received on one side is queued for the other side and *acknowledged to its sender only
once it was handed to h2 on the other side* (which itself only accepts what the receiver's window allows),
so what the proxy holds per stream is bounded by the window it advertised, whatever the speed of either peer.

Retries (``route.retries`` more attempts, each on a host not tried before for this stream): on connection
failure, on a reset before any response byte (REFUSED_STREAM included, e.g. beyond a GOAWAY's last stream),
on 503 when ``retry_on_503``, and for gRPC on a trailers-only UNAVAILABLE (grpc-status 14). A request body
is replayed from a copy kept while it is at most ``route.max_replay_body_bytes``; a longer body is not
retried. perRequestTimeout starts when the client ended its request (as Envoy's route timeout does) and
ends the stream with 504, or grpc-status 4 DEADLINE_EXCEEDED for gRPC.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING

from sc_proxy import policy
from sc_proxy.accesslog import AccessRecord
from sc_proxy.cluster import Host
from sc_proxy.http2 import grpc
from sc_proxy.http2.errors import ErrorCodes, H2Error, code_name
from sc_proxy.http2.headers import (
    Headers,
    downstream_response,
    local_response,
    pseudo,
    status_of,
    upstream_request,
)
from sc_proxy.http2.interfaces import CONNECT_ERROR

if TYPE_CHECKING:
    from sc_proxy.http2.interfaces import Downstream, Pool, Side, Upstream
    from sc_proxy.route import Route

_NO_HOSTS: frozenset[Host] = frozenset()
_REFUSED = ErrorCodes.REFUSED_STREAM
_CANCEL = ErrorCodes.CANCEL


# States of each direction's end: not yet known, queued behind data, sent.
_OPEN, _ENDING, _ENDED = 0, 1, 2


class ProxyStream:
    """Relay state of one client stream."""

    __slots__ = (
        "bytes_in", "bytes_out", "done", "down_end", "down_sid", "failure", "flags", "free_refused", "grpc",
        "host",
        "left", "pool", "queued", "replay", "replay_bytes", "req_headers", "req_trailers", "resp_status",
        "resp_trailers", "route", "sent_at", "server", "start", "timer_key", "to_down", "to_up", "tried",
        "up", "up_end", "up_headers", "up_sid", "wall_start",
    )  # fmt: skip

    def __init__(self, server: Downstream, sid: int, headers: Headers, route: Route, pool: Pool) -> None:
        self.server = server
        self.down_sid = sid
        self.route = route
        self.pool = pool
        self.req_headers = headers
        self.grpc = grpc.is_grpc(headers)
        timeout = route.per_request_timeout
        self.up_headers = upstream_request(headers, None if timeout is None else int(timeout * 1000))
        self.up: Upstream | None = None
        self.up_sid = 0
        #: The upstream connection this stream waits on (connecting, or its SETTINGS not seen yet).
        self.queued: Upstream | None = None
        self.host: Host | None = None
        self.tried = _NO_HOSTS
        self.left = route.retries
        # Routes without a retry budget (ingress) still retry a stream the upstream refused, once.
        self.free_refused = route.retries == 0
        # (bytes, flow-controlled length still to acknowledge to the sender)
        self.to_up: deque[tuple[bytes, int]] = deque()
        self.to_down: deque[tuple[bytes, int]] = deque()
        self.up_end = _OPEN
        self.down_end = _OPEN
        self.req_trailers: Headers | None = None
        self.resp_trailers: Headers | None = None
        self.replay: list[bytes] | None = []
        self.replay_bytes = 0
        self.resp_status = 0  # 0 until response headers went to the client
        self.done = False
        self.flags = "-"  # Envoy-style response flags for the access log (UF, UR, UT …)
        self.failure: str | None = None  # the last failed TLS handshake with a task (access log)
        # Durations by perf_counter: uvloop's loop.time() moves in whole milliseconds.
        self.start = time.perf_counter()
        self.wall_start = time.time()
        self.sent_at = 0.0
        self.timer_key = 0  # a perRequestTimeout deadline is pending (see deadlines.py)
        self.bytes_in = 0
        self.bytes_out = 0

    # -- attempts ---------------------------------------------------------------------------------------
    def begin(self) -> None:
        self._attempt()

    def _attempt(self) -> None:
        host = self.route.cluster.pick(self.tried)
        if host is None:
            self._local_error(503, grpc.UNAVAILABLE, "no healthy upstream", "UH")
            return
        self.host = host
        self.tried = self.tried | {host}
        self.pool.assign(host, self)

    def head_ends_request(self) -> bool:
        """Whether the request head goes upstream with END_STREAM (the whole request is the head)."""
        return self.up_end == _ENDING and not self.to_up and self.req_trailers is None

    def attached(self, up: Upstream, sid: int) -> None:
        """The upstream connection opened our stream and sent the request head: send what is queued."""
        self.up = up
        self.up_sid = sid
        self.sent_at = time.perf_counter()
        if self.head_ends_request():
            self.up_end = _ENDED
        elif self.to_up or self.up_end == _ENDING:
            self._pump_up()
        up.schedule_flush()

    def _can_retry(self) -> bool:
        return policy.may_retry(self.left, self.replay is not None, self.done or self.resp_status != 0)

    def _retry_or_fail(
        self, status: int, grpc_code: int, message: str, flags: str, refused: bool = False
    ) -> None:
        """Retry on a host not tried yet, or answer the client with the proxy's own error.

        The host is chosen by :meth:`Cluster.pick_retry`: one not tried yet while there is one.
        ``refused``: the host did not process the stream (REFUSED_STREAM, beyond a GOAWAY) and is not at
        fault. On a route without a retry budget (ingress) such a stream still gets one more attempt:
        nothing was processed, and a server closing a connection after N requests (nginx's
        keepalive_requests, gRPC's max connection age) must not fail the requests in flight.
        """
        if refused and self.left == 0 and self.free_refused and self.replay is not None and not self.done:
            self.free_refused = False
            self.left = 1
        if not self._can_retry():
            self._local_error(status, grpc_code, message, flags)
            return
        last = self.host
        cluster = self.route.cluster
        host = cluster.pick() if last is None else cluster.pick_retry(self.tried, last)
        if host is None:
            self._local_error(status, grpc_code, message, flags)
            return
        self.left -= 1
        self.route.stats.retries.inc()
        # What was queued but never sent is in the replay copy too: release its window, then replay.
        self._release_to_up()
        assert self.replay is not None
        self.to_up.extend((chunk, 0) for chunk in self.replay)
        if self.up_end == _ENDED:
            self.up_end = _ENDING
        self.host = host
        self.tried = self.tried | {host}
        self.pool.assign(host, self)

    # -- request side (events from the downstream connection) ------------------------------------------
    def on_request_data(self, data: bytes, flow_len: int, ended: bool = False) -> None:
        """Request body bytes; ``ended``: this DATA frame carried END_STREAM (sent on with the data)."""
        n = len(data)
        self.bytes_in += n
        self.route.stats.processed_bytes.inc(n)
        replay = self.replay
        if replay is not None:
            self.replay_bytes += n
            if not policy.may_replay_body(self.replay_bytes, self.route.max_replay_body_bytes):
                self.replay = None
            else:
                replay.append(data)
        self.to_up.append((data, flow_len))
        if ended and self.up_end == _OPEN:
            self._request_ended()
        if self.up is not None:
            self._pump_up()
            self.up.schedule_flush()

    def on_request_end(self) -> None:
        if self.up_end != _OPEN:
            return  # already known from the last DATA frame
        self._request_ended()
        if self.up is not None:
            self._pump_up()
            self.up.schedule_flush()

    def _request_ended(self) -> None:
        self.up_end = _ENDING
        timeout = self.route.per_request_timeout
        if timeout is not None and not self.done:
            self.timer_key = self.server.deadlines.add(self, timeout)

    def on_downstream_reset(self, code: int) -> None:
        """The client reset its stream: cancel upstream with the same code."""
        if self.done:
            return
        self._finish("DR")
        self._detach_up(code)

    def downstream_lost(self) -> None:
        if self.done:
            return
        self._finish("DC")
        self._detach_up(_CANCEL)

    # -- response side (events from the upstream connection) -------------------------------------------
    def on_response(self, headers: Headers, ended: bool) -> None:
        host = self.host
        cluster = self.route.cluster
        status = status_of(headers)
        code = grpc.status_of(headers) if self.grpc and ended else None
        if host is not None and policy.is_outlier_status(status, code):
            cluster.report_failure(host)
        if policy.may_retry_status(status, self.route.retry_on_503, code) and self._can_retry():
            self._detach_up(_CANCEL)
            self._retry_or_fail(503, grpc.UNAVAILABLE, "upstream unavailable", "URX")
            return
        service_ms = int((time.perf_counter() - self.sent_at) * 1000)
        self._send_head(downstream_response(headers, service_ms), status, ended)
        if ended:
            if code is not None:
                self._count_grpc(code)
            self.down_end = _ENDED
            self._complete()

    def on_response_data(self, data: bytes, flow_len: int, ended: bool = False) -> None:
        """Response body bytes; ``ended``: END_STREAM came with them (one DATA frame onward, not two)."""
        n = len(data)
        self.bytes_out += n
        self.route.stats.processed_bytes.inc(n)
        self.to_down.append((data, flow_len))
        if ended and self.down_end == _OPEN:
            self.down_end = _ENDING
        self._pump_down()

    def on_response_trailers(self, trailers: Headers) -> None:
        self.resp_trailers = trailers
        if self.grpc:
            code = grpc.status_of(trailers)
            if code is not None:
                self._count_grpc(code)

    def on_response_end(self) -> None:
        if self.down_end == _OPEN:
            self.down_end = _ENDING
            self._pump_down()

    def on_upstream_reset(self, code: int) -> None:
        """The upstream reset our stream (or a GOAWAY excluded it, reported as REFUSED_STREAM)."""
        if self.done:
            return
        host = self.host
        self._detach_up(None)
        if host is not None and policy.is_outlier_reset(code, response_started=self.resp_status != 0):
            self.route.cluster.report_failure(host)
        if self.resp_status == 0:
            message = f"upstream reset before response: {code_name(code)}"
            self._retry_or_fail(503, grpc.UNAVAILABLE, message, "UR", refused=code == _REFUSED)
        else:
            self._reset_down(code)

    def upstream_failed(self, message: str, failure: str | None = None) -> None:
        """The upstream connection failed or closed under this stream (already reported to the cluster);
        ``failure``: why its TLS handshake failed."""
        if self.done:
            return
        if failure is not None:
            self.failure = failure
        self._detach_up(None)
        flags = "UF" if message == CONNECT_ERROR else "UC"
        if self.resp_status == 0:
            self._retry_or_fail(503, grpc.UNAVAILABLE, message, flags)
        elif self.grpc:
            self._end_with_status(grpc.UNAVAILABLE, message)
        else:
            self._reset_down(ErrorCodes.INTERNAL_ERROR)

    def on_deadline(self) -> None:
        self.timer_key = 0
        if self.done:
            return
        self.route.stats.timeouts.inc()
        self._detach_up(_CANCEL)
        if self.resp_status == 0:
            self._local_error(504, grpc.DEADLINE_EXCEEDED, "upstream request timeout", "UT")
        elif self.grpc:
            self._end_with_status(grpc.DEADLINE_EXCEEDED, "upstream request timeout")
        else:
            self._reset_down(ErrorCodes.INTERNAL_ERROR)

    # -- pumping ------------------------------------------------------------------------------------------
    def pump(self, side: Side) -> None:
        """``side`` has window (or socket room) again."""
        if self.done:
            return
        if side is self.server:
            self._pump_down()
        elif side is self.up:
            self._pump_up()
            side.schedule_flush()

    def _pump_up(self) -> None:
        up = self.up
        assert up is not None
        if up.paused:
            up.block(self)
            return
        try:
            blocked, ended = _send_queued(
                up,
                self.up_sid,
                self.to_up,
                self.up_end == _ENDING,
                self.req_trailers,
                self.server,
                self.down_sid,
            )
        except H2Error:
            # The upstream stream closed under us; its own event (reset / connection loss) follows.
            return
        if ended:
            self.up_end = _ENDED
        if blocked:
            up.block(self)

    def _pump_down(self) -> None:
        server = self.server
        if self.done:
            return
        if server.paused:
            server.block(self)
            return
        try:
            blocked, ended = _send_queued(
                server,
                self.down_sid,
                self.to_down,
                self.down_end == _ENDING,
                self.resp_trailers,
                self.up,
                self.up_sid,
            )
        except H2Error:
            self.downstream_lost()
            return
        if ended:
            self.down_end = _ENDED
        if blocked:
            server.block(self)
            return
        server.schedule_flush()
        if self.down_end == _ENDED:
            self._complete()

    # -- answers of the proxy itself ---------------------------------------------------------------------
    def _send_head(self, headers: Headers, status: int, ended: bool) -> None:
        self.resp_status = status or 502
        self.route.stats.count_status(self.resp_status)
        try:
            self.server.h2.send_headers(self.down_sid, headers, end_stream=ended)
        except H2Error:
            self.downstream_lost()
            return
        self.server.schedule_flush()

    def _local_error(self, status: int, grpc_code: int, message: str, flags: str) -> None:
        if self.done:
            return
        self.flags = flags
        if self.grpc:
            self._count_grpc(grpc_code)
            self._send_head(grpc.trailers_only(grpc_code, message), 200, True)
            self.down_end = _ENDED
            self._complete()
            return
        body = message.encode()
        self._send_head(local_response(status, body), status, False)
        self.to_down.append((body, 0))
        self.down_end = _ENDING
        self._pump_down()

    def _end_with_status(self, code: int, message: str) -> None:
        """End a gRPC response already under way with ``code`` in its trailers (queued data is dropped)."""
        self._count_grpc(code)
        self.to_down.clear()
        try:
            self.server.h2.send_headers(self.down_sid, grpc.status_trailers(code, message), end_stream=True)
        except H2Error:
            self.downstream_lost()
            return
        self.down_end = _ENDED
        self.server.schedule_flush()
        self._complete("UC")

    def _reset_down(self, code: int) -> None:
        with contextlib.suppress(H2Error):
            self.server.h2.reset_stream(self.down_sid, code)
        self.server.schedule_flush()
        self._finish("UR")

    def _count_grpc(self, code: int) -> None:
        counters = self.pool.grpc_status
        if counters is not None:
            counters[grpc.status_class(code)].inc()

    # -- the end -------------------------------------------------------------------------------------------
    def _complete(self, flags: str | None = None) -> None:
        """The response ended towards the client."""
        if self.done:
            return
        if self.up_end == _OPEN:
            # The answer is complete before the request (RFC 9113 §8.1): tell the client to stop sending.
            with contextlib.suppress(H2Error):
                self.server.h2.reset_stream(self.down_sid, ErrorCodes.NO_ERROR)
            self.server.schedule_flush()
        if self.up is not None and self.up_end != _ENDED:
            self._detach_up(_CANCEL)
        self._finish(flags or self.flags)
        self._detach_up(None)

    def _finish(self, flags: str) -> None:
        self.done = True
        if self.timer_key:
            self.server.deadlines.discard(self, self.timer_key)
            self.timer_key = 0
        self._release_to_up()
        server = self.server
        server.blocked.pop(self, None)
        server.stream_done(self.down_sid)
        route = self.route
        now = time.perf_counter()
        elapsed_ms = (now - self.start) * 1000
        route.stats.response_time_ms.observe(elapsed_ms)
        log = route.access_log
        if log is not None:
            host = self.host
            log.log(
                AccessRecord(
                    start_time=self.wall_start,
                    direction=route.direction,
                    name=route.name,
                    method=pseudo(self.req_headers, b":method").decode("latin-1"),
                    path=pseudo(self.req_headers, b":path").decode("latin-1"),
                    protocol="HTTP/2",
                    status=self.resp_status,
                    response_flags=flags,
                    bytes_received=self.bytes_in,
                    bytes_sent=self.bytes_out,
                    duration_ms=int(elapsed_ms),
                    upstream_service_time_ms=int((now - self.sent_at) * 1000) if self.sent_at else None,
                    authority=pseudo(self.req_headers, b":authority").decode("latin-1"),
                    upstream_host=str(host) if host is not None else "-",
                    transport_failure=(self.failure or "-") if flags == "UF" else "-",
                    peer_identity=self.server.peer,
                )
            )

    def _release_to_up(self) -> None:
        """Give the client back the window of request data that will never be sent."""
        queue = self.to_up
        if not queue:
            return
        h2 = self.server.h2
        for _data, ack in queue:
            if ack:
                h2.acknowledge_received_data(ack, self.down_sid)
        queue.clear()
        self.server.schedule_flush()

    def _detach_up(self, reset_code: int | None) -> None:
        """Leave the upstream stream (resetting it with ``reset_code`` if given)."""
        up = self.up
        if up is None:
            queued = self.queued
            if queued is not None:
                queued.unqueue(self)
            return
        h2 = up.h2
        sid = self.up_sid
        if reset_code is not None:
            with contextlib.suppress(H2Error):
                h2.reset_stream(sid, reset_code)
        for _data, ack in self.to_down:
            if ack:
                h2.acknowledge_received_data(ack, sid)
        self.to_down.clear()
        up.blocked.pop(self, None)
        self.up = None
        self.up_sid = 0
        up.stream_done(sid)
        up.schedule_flush()


def _send_queued(
    side: Side,
    sid: int,
    queue: deque[tuple[bytes, int]],
    ending: bool,
    trailers: Headers | None,
    sender: Side | None,
    sender_sid: int,
) -> tuple[bool, bool]:
    """Send ``queue``'s DATA on ``side`` as far as the stream's window allows, then the end of the stream
    (``trailers``, or END_STREAM on the last DATA frame or alone) when ``ending`` and nothing is left.

    Each chunk sent is acknowledged to ``sender`` (the connection it came from), so the sender's window
    reopens only as the receiver takes data. Returns ``(blocked on the window, end of stream sent)``;
    an :class:`H2Error` from the codec (the stream is gone) propagates.
    """
    h2 = side.h2
    while queue:
        data, ack = queue[0]
        window = h2.local_flow_control_window(sid)
        if window <= 0:
            return True, False
        cut = min(window, h2.max_outbound_frame_size)
        if len(data) > cut:
            h2.send_data(sid, data[:cut])
            queue[0] = (data[cut:], ack)
            continue
        queue.popleft()
        last = not queue and ending and trailers is None
        h2.send_data(sid, data, end_stream=last)
        if ack and sender is not None:
            sender.h2.acknowledge_received_data(ack, sender_sid)
            sender.schedule_flush()
        if last:
            return False, True
    if ending:
        if trailers is not None:
            h2.send_headers(sid, trailers, end_stream=True)
        else:
            h2.end_stream(sid)
        return False, True
    return False, False
